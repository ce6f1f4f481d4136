"""The release controller's manifests: they validate, its Role grants only what the loop uses,
and its container args are flags `python -m kubemind.release` accepts."""

from __future__ import annotations

from pathlib import Path

import yaml

from kubemind.manifests import rendering
from kubemind.manifests.crd_catalog import default_crd_dir
from kubemind.manifests.references import load_allow_list
from kubemind.manifests.validator import validate_paths
from kubemind.release.settings import ReleaseSettings
from tests.manifests.conftest import REPO

FOLDER = REPO / "inferenceservices" / "rollout-controller"


def objects() -> list[dict]:
    return [obj.body for obj in rendering.parse_stream(rendering.render(FOLDER), str(FOLDER))]


def test_the_controller_manifests_validate() -> None:
    result = validate_paths([FOLDER], default_crd_dir(), allowed_refs=load_allow_list(REPO / "external-objects.yaml"))
    assert result.ok, result.problems
    kinds = sorted(obj.kind for obj in result.objects)
    assert kinds == ["CustomResourceDefinition", "Deployment", "Role", "RoleBinding", "RolloutPolicy", "ServiceAccount"]


def test_the_role_is_least_privilege() -> None:
    docs = objects()
    (role,) = [d for d in docs if d["kind"] == "Role"]
    grants = {(group, resource): sorted(rule["verbs"]) for rule in role["rules"]
              for group in rule["apiGroups"] for resource in rule["resources"]}
    assert grants == {("serving.kserve.io", "inferenceservices"): ["get", "list", "patch", "watch"],
                      ("kubemind.io", "rolloutpolicies"): ["get", "list", "watch"],
                      ("networking.istio.io", "virtualservices"): ["get", "list", "patch"]}
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "kubemind"}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_the_container_args_are_flags_the_controller_accepts() -> None:
    (deployment,) = [d for d in objects() if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    module, *flags = container["args"]
    assert module == "kubemind.release"
    values = dict(flag.removeprefix("--").split("=", 1) for flag in flags)
    assert set(values) <= set(ReleaseSettings.model_fields)
    assert ReleaseSettings(**values).namespace == deployment["metadata"]["namespace"]


def test_validate_refuses_a_controller_flag_the_controller_does_not_take(tmp_path: Path) -> None:
    # The component-args contract covers the controller's Deployment like any kubemind container.
    docs = objects()
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["args"] += ["--namspace=other", "--tick_seconds=0"]
    (tmp_path / "controller.yaml").write_text(yaml.safe_dump_all(docs))
    result = validate_paths([tmp_path / "controller.yaml"], default_crd_dir(),
                            allowed_refs=load_allow_list(REPO / "external-objects.yaml"))
    messages = [p.message for p in result.problems if p.object == "Deployment/kubemind-rollout"]
    assert any("--namspace=other" in m for m in messages), result.problems
    deployment["spec"]["template"]["spec"]["containers"][0]["args"][-2:] = ["--tick_seconds=0"]
    (tmp_path / "controller.yaml").write_text(yaml.safe_dump_all(docs))
    result = validate_paths([tmp_path / "controller.yaml"], default_crd_dir(),
                            allowed_refs=load_allow_list(REPO / "external-objects.yaml"))
    messages = [p.message for p in result.problems if p.object == "Deployment/kubemind-rollout"]
    assert any("--tick_seconds" in m and "greater than 0" in m for m in messages), result.problems
