"""`kubemind up` of the embedder on the stock Triton runtime (`kubemind-tritonserver`, NVIDIA's
image, no kubemind code): its container runs as this machine's tritonserver binary, serving the
Triton repository registered in a real MLflow registry, called through the gateway with the
stock `tritonclient` clients, and stopped by PID with its Python-backend stubs."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import tritonclient.http as triton_http
import yaml

from kubemind.cli import main as kubemind_main
from kubemind_predictors.triton.launcher import TritonInstall
from kubemind_predictors.triton.repository import build_repository
from tests.component import registry_fixtures
from tests.component.serve_fixtures import wait_dead
from tests.component.triton_fixtures import as_array, stock_client
from tests.component.up_fixtures import REPO, Up, process_pids, write_runtimes_overlay

mlflow_server = registry_fixtures.mlflow_server
registry_env = registry_fixtures.registry_env
pytestmark = pytest.mark.usefixtures("registry_env")

TEXTS = ("a cat sits on the mat", "the stock market fell")


def embedder_service(storage_uri: str) -> dict[str, Any]:
    """The base's embedder InferenceService, on the registered repository instead of its pin."""
    service = yaml.safe_load((REPO / "inferenceservices" / "base" / "embedder" / "inferenceservice.yaml").read_text())
    service["spec"]["predictor"]["model"]["storageUri"] = storage_uri
    return dict(service)


def test_the_embedder_on_stock_triton_runs_as_the_local_tritonserver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install = TritonInstall.default()
    repository = build_repository(tmp_path / "minilm-repo", ["minilm"], install.onnx_dir, copy_artifacts=True)
    assert kubemind_main(["models", "register", "minilm-stock-triton", str(repository), "--flavor", "triton-repo"]) == 0
    version = json.loads(capsys.readouterr().out)["version"]
    overlay = write_runtimes_overlay(tmp_path / "overlay", embedder_service(f"models:/minilm-stock-triton/{version}"))

    up = Up(overlay, tmp_path / "home")
    try:
        state = up.wait_ready()
        [pid] = process_pids(state)
        # The replica up supervises is tritonserver itself (exec'd in place of the entry module).
        triton = psutil.Process(pid)
        assert Path(triton.exe()).resolve() == install.binary.resolve()
        assert any(arg.startswith("--model-store=") and "/mnt/models" not in arg for arg in triton.cmdline())
        stubs = [child.pid for child in triton.children(recursive=True)]
        assert stubs, "minilm's Python-backend stub is not running"

        client = triton_http.InferenceServerClient(
            f"127.0.0.1:{state['gateway']['http_port']}/serving/kubemind/embedder")
        assert client.is_server_ready()
        text = triton_http.InferInput("text", [len(TEXTS), 1], "BYTES")
        text.set_data_from_numpy(np.array([[t.encode()] for t in TEXTS], dtype=np.object_))
        result = client.infer("minilm", [text])
        embedding = result.as_numpy("embedding")
        assert embedding.shape == (len(TEXTS), 384)
        np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, rtol=1e-4)  # L2-normalised
        assert result.get_response()["model_version"] == "1"  # stock Triton: the repository's own folder

        (answer,) = stock_client(f"127.0.0.1:{state['gateway']['grpc_port']}", {
            "model": "minilm",
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(TEXTS), 1],
                        "data": [base64.b64encode(t.encode()).decode() for t in TEXTS]}],
        })
        assert "error" not in answer, answer
        np.testing.assert_allclose(as_array(answer, "embedding"), embedding, atol=1e-5)
    finally:
        assert up.stop() == 0, up.text()
    assert wait_dead(pid), f"tritonserver pid {pid} outlived kubemind up"
    for stub in stubs:
        assert wait_dead(stub), f"Python-backend stub pid {stub} outlived kubemind up"
