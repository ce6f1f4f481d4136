"""The shadow phase's traffic: a copy of live requests, answers dropped, for the candidate alone.

The controller adds a `mirror` to every HTTP route of the namespace's VirtualServices that
delivers to the InferenceService (istio/base routes through Knative's local gateway with the
service in `rewrite.authority`), to the candidate revision's own Service
(`REVISION.NAMESPACE.svc.cluster.local`, which Knative creates for every revision), with the
policy's `mirrorPercent`; it removes the mirror when the shadow phase ends, however it ends.
Live traffic stays on the primary (`canaryTrafficPercent: 0`), so a shadow that disagrees never
answers a client. `kubemind up` runs the same VirtualServices, mirror included, in its gateway.

Routes written by hand with a mirror of their own are left alone: only a mirror this module set
(marked by the annotation) is replaced or removed.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kubemind.manifests.istio_routes import revision_host, route_destination, service_name

MIRROR_ANNOTATION = "kubemind.io/shadow-mirror"
"""On a VirtualService: JSON {"revision", "routes"} of the mirror the controller set."""


def routes_to(virtual_service: dict[str, Any], isvc: str, namespace: str) -> list[int]:
    """Indexes of the HTTP routes that deliver to InferenceService `isvc`."""
    vs_namespace = str((virtual_service.get("metadata") or {}).get("namespace") or namespace)
    http = (virtual_service.get("spec") or {}).get("http") or []
    return [index for index, route in enumerate(http)
            if route.get("route") and service_name(route_destination(route), vs_namespace) == (namespace, isvc)]


def _owned(virtual_service: dict[str, Any]) -> dict[str, Any] | None:
    annotations = (virtual_service.get("metadata") or {}).get("annotations") or {}
    try:
        owned = json.loads(annotations.get(MIRROR_ANNOTATION) or "null")
    except ValueError:
        return None
    return owned if isinstance(owned, dict) else None


def mirror_patch(virtual_service: dict[str, Any], isvc: str, namespace: str, revision: str | None,
                 percent: int) -> dict[str, Any] | None:
    """The merge patch that makes this VirtualService mirror `percent` % of `isvc`'s requests to
    `revision` (None: mirror nothing of ours), or None when it already does. Conditional on the
    resourceVersion read, like the controller's InferenceService patches."""
    http = copy.deepcopy((virtual_service.get("spec") or {}).get("http") or [])
    owned = _owned(virtual_service)
    for index in (owned or {}).get("routes") or []:
        if isinstance(index, int) and index < len(http) and "mirror" in http[index]:
            http[index].pop("mirror")
            http[index].pop("mirrorPercentage", None)
    marked: list[int] = []
    if revision is not None:
        mirror = {"host": revision_host(revision, namespace), "port": {"number": 80}}
        for index in routes_to(virtual_service, isvc, namespace):
            if "mirror" in http[index]:
                continue  # a mirror somebody else set: theirs
            http[index]["mirror"] = mirror
            http[index]["mirrorPercentage"] = {"value": float(percent)}
            marked.append(index)
    wanted = json.dumps({"revision": revision, "routes": marked}, sort_keys=True) if marked else None
    unchanged = (http == ((virtual_service.get("spec") or {}).get("http") or [])
                 and ((virtual_service.get("metadata") or {}).get("annotations") or {}).get(MIRROR_ANNOTATION) == wanted)
    if unchanged:
        return None
    metadata = virtual_service["metadata"]
    return {"metadata": {"resourceVersion": metadata["resourceVersion"], "annotations": {MIRROR_ANNOTATION: wanted}},
            "spec": {"http": http}}
