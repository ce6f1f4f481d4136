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


# -- the job writer: the cv-classifier predictor with the jobs routes ---------------------------------
def _writer_and_worker(served: list[dict]) -> tuple[dict, dict]:
    """(the container KServe assembles for cv-classifier's predictor, the cv-worker container)."""
    from kubemind.manifests.component_args import model_container

    isvc = _one(served, "InferenceService", "cv-classifier")
    model = isvc["spec"]["predictor"]["model"]
    writer = model_container(model, _one(served, "ClusterServingRuntime", model["runtime"]))
    assert writer is not None
    (worker,) = _one(served, "Deployment", "cv-worker")["spec"]["template"]["spec"]["containers"]
    return writer, worker


def _settings(container: dict, settings_cls: type, name: str = "cv-classifier") -> object:
    """The container's settings as its process parses them (plain env values; Secret refs aside)."""
    from kubemind.manifests.component_args import expand_arg
    from kubemind.settings import parse_settings

    args = [expand_arg(str(arg), name, {}) for arg in container.get("args") or []]
    return parse_settings(settings_cls, args)


def _secret_refs(container: dict) -> dict[str, dict]:
    """env name without its component prefix (DATABASE_URL) -> its secretKeyRef."""
    return {
        e["name"].removeprefix("KUBEMIND_JOBS_").removeprefix("KUBEMIND_WORKER_"): e["valueFrom"]["secretKeyRef"]
        for e in container.get("env") or []
        if "secretKeyRef" in e.get("valueFrom", {})
    }


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_staging_and_prod_serve_the_jobs_routes_on_the_cv_classifier_predictor(env: str) -> None:
    """The predictor runs the job writer, publishing where the worker's KafkaSource consumes (same
    topic, same brokers), with the worker's database Secret and Redis; its REST port has a Service."""
    from kubemind_workers.settings import CVWorkerSettings, JobWriterSettings

    served, eventing = _rendered("inferenceservices", env), _rendered("knative", env)
    writer_container, worker_container = _writer_and_worker(served)
    source = _one(eventing, "KafkaSource", "cv-jobs")
    service = _one(served, "Service", "cv-classifier-jobs")

    assert writer_container["command"][-2:] == ["-m", "kubemind_workers"]
    writer = _settings(writer_container, JobWriterSettings)
    worker = _settings(worker_container, CVWorkerSettings)
    assert isinstance(writer, JobWriterSettings) and isinstance(worker, CVWorkerSettings)
    assert writer.model_name == "cv-classifier" and writer.model_dir is not None and writer.launch_triton
    assert writer.topic == worker.topic == "cv-jobs"
    assert writer.topic in source["spec"]["topics"]
    assert (writer.broker, writer.broker_url.split(",")) == ("kafka", source["spec"]["bootstrapServers"])
    assert (writer.redis_url, writer.redis_prefix, writer.status_ttl_seconds) == (
        worker.redis_url, worker.redis_prefix, worker.status_ttl_seconds)  # fmt: skip
    writer_secrets, worker_secrets = _secret_refs(writer_container), _secret_refs(worker_container)
    assert writer_secrets["DATABASE_URL"] == worker_secrets["DATABASE_URL"] == {"name": "kubemind-jobs", "key": "database-url"}
    assert worker.predictor_host.startswith("cv-classifier-predictor.")  # the worker infers where the writer validated
    assert service["spec"]["selector"] == {"serving.kserve.io/inferenceservice": "cv-classifier", "component": "predictor"}
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [writer.http_port]


@pytest.mark.parametrize("env", ["dev", "local"])
def test_dev_and_local_predictors_run_no_job_writer(env: str) -> None:
    isvc = _one(_rendered("inferenceservices", env), "InferenceService", "cv-classifier")
    assert "command" not in isvc["spec"]["predictor"]["model"]


def test_on_rabbitmq_the_writer_and_the_worker_read_one_broker_secret(tmp_path: Path) -> None:
    import yaml

    from kubemind.manifests.rendering import render
    from kubemind_workers.settings import CVWorkerSettings, JobWriterSettings

    root = tmp_path / "inferenceservices"
    shutil.copytree(REPO / "inferenceservices", root)
    overlay = root / "overlays" / "rabbitmq"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "resources: [../../base]\ncomponents: [../../components/async-jobs, ../../components/async-jobs-rabbitmq]\n"
    )
    served = [o for o in yaml.safe_load_all(render(overlay)) if o]
    writer_container, worker_container = _writer_and_worker(served)
    writer = _settings(writer_container, JobWriterSettings)
    worker = _settings(worker_container, CVWorkerSettings)

    assert isinstance(writer, JobWriterSettings) and isinstance(worker, CVWorkerSettings)
    assert writer.broker == worker.broker == "rabbitmq" and writer.topic == worker.topic == "cv-jobs"
    assert not any(arg.startswith("--broker_url") for arg in writer_container["args"])
    amqp = {"name": "kubemind-jobs", "key": "amqp-url"}
    assert _secret_refs(writer_container)["BROKER_URL"] == _secret_refs(worker_container)["BROKER_URL"] == amqp
