"""Every principal an Istio AuthorizationPolicy admits is a ServiceAccount that exists and that a
workload runs as.

A policy naming `cluster.local/ns/kubemind/sa/X` where no pod runs as X admits nobody: the pod
meant runs as `default` and is refused (403, RBAC: access denied) on a real cluster, while every
render, schema and `kubemind validate` passes. An environment is deployed as its three trees
together, so the policies (istio/), the ServiceAccounts and the workloads (inferenceservices/,
knative/) are checked across the committed renderings of one environment. A ServiceAccount that
another installation creates (Istio's gateway, Knative's activator) is listed in
external-objects.yaml, with the workload that runs as it as the reason.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubemind.manifests.rendering import render
from tests.manifests.conftest import ENVIRONMENTS, REPO

PRINCIPAL = re.compile(r"^cluster\.local/ns/(?P<namespace>[a-z0-9-]+)/sa/(?P<name>[a-z0-9.-]+)$")
ISVC_COMPONENTS = ("predictor", "transformer", "explainer")
POD_TEMPLATE = {"Deployment": ("spec", "template"), "StatefulSet": ("spec", "template"),
                "DaemonSet": ("spec", "template"), "Job": ("spec", "template"),
                "CronJob": ("spec", "jobTemplate", "spec", "template"), "Service": ("spec", "template")}
Account = tuple[str, str]


def _rendered(tree: str, env: str) -> list[dict[str, Any]]:
    return [o for o in yaml.safe_load_all((REPO / tree / "rendered" / f"{env}.yaml").read_text()) if o]


def _principals(objects: list[dict[str, Any]]) -> dict[str, list[str]]:
    """{principal: [the policies admitting it]}"""
    found: dict[str, list[str]] = {}
    for obj in objects:
        if obj["kind"] != "AuthorizationPolicy":
            continue
        for rule in obj["spec"].get("rules") or []:
            for source in rule.get("from") or []:
                for principal in source.get("source", {}).get("principals") or []:
                    found.setdefault(principal, []).append(f"{obj['metadata']['namespace']}/{obj['metadata']['name']}")
    return found


def _pod_specs(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(what, pod spec) of each pod an object runs: an InferenceService's components, a workload's
    pod template (a Knative Service's too)."""
    what = f"{obj['kind']} {obj['metadata'].get('namespace')}/{obj['metadata']['name']}"
    if obj["kind"] == "InferenceService":
        return [(f"{what} {c}", obj["spec"][c]) for c in ISVC_COMPONENTS if c in obj["spec"]]
    path = POD_TEMPLATE.get(obj["kind"])
    if path is None or (obj["kind"] == "Service" and not obj["apiVersion"].startswith("serving.knative.dev/")):
        return []
    template: Any = obj
    for key in path:
        template = template[key]
    return [(what, template.get("spec") or {})]


def _workload_accounts(objects: list[dict[str, Any]]) -> dict[Account, list[str]]:
    """{(namespace, ServiceAccount): [the pods running as it]}; a pod naming none runs as `default`."""
    used: dict[Account, list[str]] = {}
    for obj in objects:
        for what, pod in _pod_specs(obj):
            namespace = obj["metadata"].get("namespace")
            assert namespace, f"{what} has no namespace in its rendering"
            used.setdefault((namespace, pod.get("serviceAccountName") or "default"), []).append(what)
    return used


def _external_accounts() -> set[Account]:
    entries = yaml.safe_load((REPO / "external-objects.yaml").read_text())
    return {(e["namespace"], e["name"]) for e in entries if e["kind"] == "ServiceAccount"}


def unadmitted(objects: list[dict[str, Any]]) -> list[str]:
    """One line per admitted principal that is no ServiceAccount, or one no workload runs as."""
    defined = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects if o["kind"] == "ServiceAccount"}
    external, used = _external_accounts(), _workload_accounts(objects)
    problems = []
    for principal, policies in sorted(_principals(objects).items()):
        where = f"{principal} (admitted by {', '.join(policies)})"
        match = PRINCIPAL.match(principal)
        if not match:
            problems.append(f"{where}: not one ServiceAccount (cluster.local/ns/NAMESPACE/sa/NAME)")
            continue
        account = (match["namespace"], match["name"])
        if account in external:
            continue  # created, and run as, by another installation: external-objects.yaml says which
        if account not in defined:
            problems.append(f"{where}: no ServiceAccount {account[0]}/{account[1]} is defined"
                            " (nor listed in external-objects.yaml)")
        elif account not in used:
            runs = {f"{ns}/{sa}": pods for (ns, sa), pods in used.items() if ns == account[0]}
            problems.append(f"{where}: no workload runs as it (in {account[0]}: {runs})")
    return problems


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_admitted_principal_is_a_service_account_a_workload_runs_as(env: str) -> None:
    objects = [o for tree in ("istio", "inferenceservices", "knative") for o in _rendered(tree, env)]
    assert _principals(objects), f"{env}: no AuthorizationPolicy admits a principal (nothing checked)"
    assert unadmitted(objects) == []


@pytest.mark.skipif(shutil.which("kubectl") is None and shutil.which("kustomize") is None,
                    reason="kustomize (kubectl) not installed")
def test_the_knative_worker_runs_as_the_account_the_predictor_admits(tmp_path: Path) -> None:
    """knative/components/cv-worker: the CV worker as a Knative Service instead of the Deployment
    (staging's inferenceservices without it): the predictor still admits it."""
    root = tmp_path / "knative"
    shutil.copytree(REPO / "knative", root)
    overlay = root / "overlays" / "worker"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "resources: [../../base]\ncomponents: [../../components/cv-jobs, ../../components/cv-worker]\n")
    eventing = [o for o in yaml.safe_load_all(render(overlay)) if o]
    served = [o for o in _rendered("inferenceservices", "staging")
              if not (o["kind"] in ("Deployment", "Service") and o["metadata"]["name"] == "cv-worker")]
    objects = [*_rendered("istio", "staging"), *served, *eventing]
    assert "cluster.local/ns/kubemind/sa/cv-worker" in _principals(objects)
    assert unadmitted(objects) == []


def test_a_principal_no_pod_runs_as_is_reported() -> None:
    objects = _rendered("istio", "prod") + [
        o for o in _rendered("inferenceservices", "prod") if o["kind"] != "ServiceAccount"]
    assert any(line.startswith("cluster.local/ns/kubemind/sa/cv-worker ") and "no ServiceAccount" in line
               for line in unadmitted(objects))
