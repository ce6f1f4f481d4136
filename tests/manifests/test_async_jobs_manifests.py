"""The async-jobs component (CV worker Deployment + KEDA ScaledObject) passes `kubemind validate`
when an overlay includes it, its args parse with CVWorkerSettings, and a typo in them fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kubemind.cli import main
from tests.manifests.conftest import REPO

SECRET = "- {kind: Secret, namespace: kubemind, name: kubemind-jobs, reason: the operator creates it}\n"


def with_jobs(tmp_path: Path) -> Path:
    root = tmp_path / "inferenceservices"
    shutil.copytree(REPO / "inferenceservices", root)
    (root / "overlays" / "jobs").mkdir()
    shutil.copy(root / "base" / "namespace.yaml", root / "overlays" / "jobs" / "namespace.yaml")
    (root / "overlays" / "jobs" / "kustomization.yaml").write_text(
        "resources: [namespace.yaml]\ncomponents: [../../components/async-jobs]\n"
        "images:\n  - {name: kubemind/worker-cv, newName: registry.kubemind.dev/kubemind/worker-cv, newTag: 0.1.0}\n"
    )
    return root / "overlays" / "jobs"


def test_the_worker_and_its_scaler_validate(tmp_path: Path) -> None:
    allow = tmp_path / "external.yaml"
    allow.write_text(SECRET)

    assert main(["validate", str(with_jobs(tmp_path)), "--allow-refs", str(allow)]) == 0


def test_a_worker_arg_its_settings_do_not_know_fails(tmp_path: Path, capsys) -> None:
    overlay = with_jobs(tmp_path)
    worker = overlay.parent.parent / "components" / "async-jobs" / "cv-worker.yaml"
    worker.write_text(worker.read_text().replace("--batch_size=8", "--batch_sise=8"))
    allow = tmp_path / "external.yaml"
    allow.write_text(SECRET)

    assert main(["validate", str(overlay), "--allow-refs", str(allow)]) != 0
    assert "batch_sise" in capsys.readouterr().out


def test_the_knative_variant_validates_with_its_sink(tmp_path: Path, capsys) -> None:
    """cv-jobs (the KafkaSource) with cv-worker: the sink exists, delivery has retries and a
    dead-letter sink, and the worker's args parse."""
    root = tmp_path / "knative"
    shutil.copytree(REPO / "knative", root)
    overlay = root / "overlays" / "jobs"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text(
        "resources: [../../base]\ncomponents: [../../components/cv-jobs, ../../components/cv-worker]\n"
    )
    allow = tmp_path / "external.yaml"
    allow.write_text(SECRET)

    assert main(["validate", str(overlay), "--allow-refs", str(allow)]) == 0, capsys.readouterr().out


def _rendered(tree: str, env: str) -> list[dict]:
    import yaml

    return [o for o in yaml.safe_load_all((REPO / tree / "rendered" / f"{env}.yaml").read_text()) if o]


def _one(objects: list[dict], kind: str, name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_staging_and_prod_run_the_worker_as_the_kafkasource_sink(env: str) -> None:
    """The KafkaSource's sink is the worker Deployment's Service (port 80 → the CloudEvents port),
    KEDA scales that Deployment on the KafkaSource's own consumer group, and the source is the
    topic's only consumer (the worker joins no group of its own)."""
    served, eventing = _rendered("inferenceservices", env), _rendered("knative", env)
    source = _one(eventing, "KafkaSource", "cv-jobs")
    worker = _one(served, "Deployment", "cv-worker")
    service = _one(served, "Service", "cv-worker")
    (trigger,) = _one(served, "ScaledObject", "cv-worker")["spec"]["triggers"]
    (container,) = worker["spec"]["template"]["spec"]["containers"]

    assert source["spec"]["sink"]["ref"] == {"apiVersion": "v1", "kind": "Service", "name": "cv-worker"}
    assert {"name": "http", "port": 80, "targetPort": "http"} in service["spec"]["ports"]
    assert {"name": "http", "containerPort": 8080} in container["ports"]
    assert "--broker=cloudevents" in container["args"] and "--broker_url=0.0.0.0:8080" in container["args"]
    assert not any(arg.startswith("--consumer_group=") for arg in container["args"])
    assert (trigger["type"], trigger["metadata"]["consumerGroup"]) == ("kafka", source["spec"]["consumerGroup"])
    assert trigger["metadata"]["topic"] in source["spec"]["topics"]
    dead = source["spec"]["delivery"]["deadLetterSink"]["ref"]
    assert source["spec"]["delivery"]["retry"] > 0
    assert _one(eventing, dead["kind"], dead["name"])["spec"]["topic"] == "cv-jobs.dead"


@pytest.mark.parametrize("env", ["dev", "local"])
def test_dev_and_local_have_no_worker(env: str) -> None:
    assert not [o for o in _rendered("inferenceservices", env) if o["metadata"]["name"] == "cv-worker"]
