"""The MLflow server the overlays deploy: its flags are ones `mlflow server` accepts, and its
image is the MLflow version kubemind's registry client is pinned to."""

from __future__ import annotations

import pytest
import yaml

from tests.manifests.conftest import ENVIRONMENTS, REPO


def _server_container(env: str) -> dict:
    docs = yaml.safe_load_all((REPO / "inferenceservices" / "rendered" / f"{env}.yaml").read_text())
    (deployment,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_mlflow_server_args_parse_with_mlflow_cli(env):
    mlflow = pytest.importorskip("mlflow")
    from mlflow.cli import server

    container = _server_container(env)
    assert container["command"] == ["mlflow", "server"]
    # Kubernetes expands $(POSTGRES_PASSWORD) from the env before the server sees it.
    args = [a.replace("$(POSTGRES_PASSWORD)", "secret") for a in container["args"]]
    context = server.make_context("server", args)
    assert context.params["backend_store_uri"].startswith("postgresql://mlflow:secret@")
    assert context.params["serve_artifacts"] is True
    assert container["image"] == f"ghcr.io/mlflow/mlflow:v{mlflow.__version__}"


def test_storage_initializer_calls_the_deployed_server():
    docs = list(yaml.safe_load_all((REPO / "inferenceservices" / "rendered" / "prod.yaml").read_text()))
    (storage,) = [d for d in docs if d["kind"] == "ClusterStorageContainer"]
    env = {e["name"]: e["value"] for e in storage["spec"]["container"]["env"]}
    (service,) = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "mlflow"]
    port = service["spec"]["ports"][0]["port"]
    namespace = service["metadata"]["namespace"]
    assert env["MLFLOW_TRACKING_URI"] == f"http://mlflow.{namespace}.svc.cluster.local:{port}"
