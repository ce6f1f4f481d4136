"""An InferenceService's KServe status, from what the runner runs for it.

The fields are KServe's (pkg/apis/serving/v1beta1/inference_service_status.go): `url`,
`address.url`, the conditions (`PredictorReady`, `TransformerReady`, `IngressReady`,
`LatestDeploymentReady`, `Ready`), per component `latestCreatedRevision`,
`latestReadyRevision`, `latestRolledoutRevision`, `previousRolledoutRevision` and `traffic`
(during a canary: the latest revision tagged `latest`, the rolled-out one tagged `prev`, as
KServe tags them), `modelStatus` and `observedGeneration`. A release controller reads exactly
these on a cluster, so it reads them here too.
"""

from __future__ import annotations

from typing import Any

from kubemind.local.up.kube_objects import now_timestamp


def _condition(kind: str, ok: bool, reason: str, message: str, previous: dict[str, dict[str, Any]]) -> dict[str, Any]:
    status = "True" if ok else "False"
    before = previous.get(kind)
    # A condition's time is when its status last changed, not when it was last computed.
    when = before["lastTransitionTime"] if before and before.get("status") == status else now_timestamp()
    condition = {"type": kind, "status": status, "lastTransitionTime": when}
    if not ok:
        condition.update(reason=reason, message=message)
    return condition


def _revision_ready(revision: dict[str, Any]) -> bool:
    return int(revision["ready"]) >= int(revision["wanted"])


def _component_status(component: dict[str, Any]) -> tuple[dict[str, Any], bool, bool, str]:
    """(status.components[name], serving ready, latest ready, why not)."""
    revisions = {r["revision"]: r for r in component["revisions"]}
    latest, rolled_out = component["latest"], component["rolled_out"]
    traffic: dict[str, int] = component.get("traffic") or {}
    latest_ok = latest in revisions and _revision_ready(revisions[latest])
    serving_ok = bool(traffic) and all(name in revisions and _revision_ready(revisions[name]) for name in traffic)
    status: dict[str, Any] = {"latestCreatedRevision": latest, "url": f"http://{component['address']['http']}"}
    ready_revision = latest if latest_ok else rolled_out if rolled_out in revisions else None
    if ready_revision:
        status["latestReadyRevision"] = ready_revision
    if rolled_out:
        status["latestRolledoutRevision"] = rolled_out
    if component.get("previous_rolled_out"):
        status["previousRolledoutRevision"] = component["previous_rolled_out"]
    if len(traffic) > 1:  # a canary: KServe's two tagged targets
        status["traffic"] = [
            {"tag": "latest", "revisionName": latest, "percent": traffic.get(latest, 0), "latestRevision": True},
            *({"tag": "prev", "revisionName": name, "percent": percent, "latestRevision": False}
              for name, percent in traffic.items() if name != latest)]
    else:
        status["traffic"] = [{"revisionName": name, "percent": percent, "latestRevision": name == latest}
                             for name, percent in traffic.items()]
    if component.get("problem"):
        why = str(component["problem"])
    elif not serving_ok:
        why = ", ".join(f"{name}: {revisions[name]['ready']}/{revisions[name]['wanted']} replicas ready"
                        for name in traffic if name in revisions) or "no revision routed yet"
    else:
        why = ""
    return status, serving_ok and not component.get("problem"), latest_ok, why


def inference_service_status(service: dict[str, Any], observed_generation: int,
                             previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """`service` is one entry of the runner's state (what `kubemind status` prints)."""
    before = {c["type"]: c for c in (previous or {}).get("conditions", []) if isinstance(c, dict)}
    conditions = []
    components: dict[str, Any] = {}
    all_ok = latest_all_ok = bool(service["components"]) and not service.get("problem")
    for component in service["components"]:
        component_status, ok, latest_ok, why = _component_status(component)
        name = component["component"]
        components[name] = component_status
        conditions.append(_condition(f"{name.capitalize()}Ready", ok, "RevisionNotReady", why, before))
        all_ok = all_ok and ok
        latest_all_ok = latest_all_ok and latest_ok
    routed = any(c.get("traffic") for c in service["components"])
    problem = str(service.get("problem") or "")
    conditions.append(_condition("IngressReady", routed, "NotRouted",
                                 problem or "the gateway routes nothing to it yet", before))
    conditions.append(_condition("LatestDeploymentReady", latest_all_ok, "RevisionNotReady",
                                 problem or "the latest revisions are not ready yet", before))
    why_not = problem or next((c.get("message", "") for c in conditions if c["status"] != "True"), "")
    conditions.append(_condition("Ready", all_ok and routed, "NotRunnableLocally" if problem else "NotReady",
                                 why_not, before))
    status: dict[str, Any] = {
        "observedGeneration": observed_generation,
        "conditions": sorted(conditions, key=lambda c: c["type"]),
        "components": components,
        "modelStatus": {"transitionStatus": "UpToDate" if latest_all_ok else "InProgress",
                        "states": {"activeModelState": "Loaded" if all_ok else "Pending",
                                   "targetModelState": "Loaded"}},
    }
    if routed:
        status["url"] = service["url"]
        status["address"] = {"url": service["path_url"]}
    return status
