"""The autoscaling and monitoring components pass `kubemind validate` in an overlay, render the
signals docs/autoscaling.md describes, and the validator refuses what would not scale."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from kubemind.cli import main
from kubemind.manifests import rendering
from tests.manifests.conftest import REPO

SECRET = "- {kind: Secret, namespace: kubemind, name: kubemind-jobs, reason: the operator creates it}\n"


def _overlay(tmp_path: Path, components: list[str], resources: str = "../../base") -> Path:
    """A copy of inferenceservices with one more overlay: prod's images, these components."""
    root = tmp_path / "inferenceservices"
    shutil.copytree(REPO / "inferenceservices", root)
    prod = yaml.safe_load((root / "overlays" / "prod" / "kustomization.yaml").read_text())
    overlay = root / "overlays" / "scaling"
    overlay.mkdir()
    if resources == "namespace.yaml":  # kustomize reads files only at or below the overlay
        shutil.copy(root / "base" / "namespace.yaml", overlay / "namespace.yaml")
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [resources],
        "components": [f"../../components/{c}" for c in components],
        "images": [*prod["images"], {"name": "kubemind/worker-cv", "newName": "registry.kubemind.dev/kubemind/worker-cv", "newTag": "0.1.0"}],
    }))
    return overlay


def _validate(overlay: Path, tmp_path: Path, capsys) -> tuple[int, str]:
    allow = tmp_path / "external.yaml"
    allow.write_text((REPO / "external-objects.yaml").read_text() + SECRET)
    code = main(["validate", str(overlay), "--allow-refs", str(allow)])
    return code, capsys.readouterr().out


def _objects(overlay: Path) -> list[dict]:
    return list(yaml.safe_load_all(rendering.render(overlay)))


def test_the_keda_variant_validates_and_scales_on_engine_and_request_signals(tmp_path: Path, capsys) -> None:
    overlay = _overlay(tmp_path, ["grpc", "monitoring", "autoscaling-keda"])
    code, out = _validate(overlay, tmp_path, capsys)
    assert code == 0, out

    objects = _objects(overlay)
    llm = next(o for o in objects if o["kind"] == "InferenceService" and o["metadata"]["name"] == "llm-chat")
    assert llm["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert llm["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
    queries = {
        o["metadata"]["name"]: [t["metadata"]["query"] for t in o["spec"]["triggers"]]
        for o in objects if o["kind"] == "ScaledObject"
    }
    assert any("vllm:num_requests_waiting" in q for q in queries["llm-chat-predictor"])
    assert any("vllm:kv_cache_usage_perc" in q for q in queries["llm-chat-predictor"])
    assert any(q.startswith("sum(rate(kubemind_requests_total") for q in queries["cv-classifier-transformer"])
    assert any(q.startswith("histogram_quantile(0.95") for q in queries["cv-classifier-transformer"])


def test_a_scaledobject_on_a_knative_managed_predictor_is_refused(tmp_path: Path, capsys) -> None:
    """Without the Standard-mode patch Knative's autoscaler and KEDA's HPA would both set replicas."""
    overlay = _overlay(tmp_path, ["grpc", "autoscaling-keda"])
    component = overlay.parent.parent / "components" / "autoscaling-keda" / "kustomization.yaml"
    spec = yaml.safe_load(component.read_text())
    spec["patches"] = [p for p in spec["patches"] if p["target"]["name"] != "cv-classifier"]
    component.write_text(yaml.safe_dump(spec))

    code, out = _validate(overlay, tmp_path, capsys)
    assert code == 1
    assert "cv-classifier-predictor is already scaled by Knative's autoscaler" in out
    assert "llm-chat-predictor" not in out


def test_a_scaledobject_naming_no_deployment_is_refused(tmp_path: Path, capsys) -> None:
    overlay = _overlay(tmp_path, ["grpc", "autoscaling-keda"])
    scaled = overlay.parent.parent / "components" / "autoscaling-keda" / "llm-chat-scaledobject.yaml"
    scaled.write_text(scaled.read_text().replace("name: llm-chat-predictor\n  minReplicaCount", "name: llm-chat\n  minReplicaCount"))

    code, out = _validate(overlay, tmp_path, capsys)
    assert code == 1
    assert "Deployment 'llm-chat' is not defined by this rendering" in out


def test_the_rabbitmq_worker_validates_and_scales_on_queue_length(tmp_path: Path, capsys) -> None:
    overlay = _overlay(tmp_path, ["async-jobs", "async-jobs-rabbitmq"], resources="namespace.yaml")
    code, out = _validate(overlay, tmp_path, capsys)
    assert code == 0, out

    objects = _objects(overlay)
    worker = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "cv-worker")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert "--broker=rabbitmq" in container["args"]
    assert not any(a.startswith("--broker_url=") for a in container["args"])
    (trigger,) = next(o for o in objects if o["kind"] == "ScaledObject")["spec"]["triggers"]
    assert (trigger["type"], trigger["metadata"]["queueName"], trigger["metadata"]["mode"]) == ("rabbitmq", "cv-jobs", "QueueLength")


def test_a_misspelt_field_in_a_prometheusrule_is_refused(tmp_path: Path, capsys) -> None:
    overlay = _overlay(tmp_path, ["grpc", "monitoring"])
    rules = overlay.parent.parent / "components" / "monitoring" / "prometheusrules.yaml"
    rules.write_text(rules.read_text().replace("    - alert: SLOErrorBudgetBurn", "    - alret: SLOErrorBudgetBurn", 1))

    code, out = _validate(overlay, tmp_path, capsys)
    assert code == 1
    assert "alret" in out


def test_the_serverless_targets_follow_the_engine_batch() -> None:
    """components/autoscaling-knative: the LLM's concurrency target is its max_num_seqs."""
    for env in ("staging", "prod"):
        objects = yaml.safe_load_all((REPO / "inferenceservices" / "rendered" / f"{env}.yaml").read_text())
        llm = next(o for o in objects if o["kind"] == "InferenceService" and o["metadata"]["name"] == "llm-chat")
        predictor = llm["spec"]["predictor"]
        seqs = [a.split("=", 1)[1] for a in predictor["model"].get("args", []) if a.startswith("--max_num_seqs=")]
        assert predictor["scaleMetric"] == "concurrency"
        assert predictor["scaleTarget"] == int(seqs[-1]), env
