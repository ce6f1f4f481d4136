"""`kubemind serve --model models:/NAME@champion` for the ONNX and the LLM flavor, against a real
`mlflow server`: the registered model answers through stock clients under its registered
version (the pyfunc and Triton-repository flavors have their own test modules)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from kubemind.cli import main as kubemind_main
from tests.component import registry_fixtures
from tests.component.llm_fixtures import tiny_llama_dir
from tests.component.serve_fixtures import Serve, wait_dead

mlflow_server = registry_fixtures.mlflow_server
registry_env = registry_fixtures.registry_env
pytestmark = pytest.mark.usefixtures("registry_env")


def register(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code = kubemind_main(["models", "register", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return dict(json.loads(out))


def test_registered_onnx_model_is_served_by_one_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import onnxruntime
    import tritonclient.http as triton_http

    folder = registry_fixtures.build_onnx_model(tmp_path / "tiny-onnx")
    version = register(capsys, "tiny-onnx", str(folder), "--flavor", "onnx", "--alias", "champion")["version"]
    serve = Serve(tmp_path, "--model", "models:/tiny-onnx@champion", "--http_port", "0", "--grpc_port", "0")
    try:
        serve.wait_ready()
        assert "kubemind_predictors.onnx" in serve.text()
        client = triton_http.InferenceServerClient(serve.http_url.removeprefix("http://"))
        assert client.get_model_metadata("tiny-onnx")["versions"] == [version]
        x = np.array([[0.5, -1.0, 2.0], [1.0, 1.0, 1.0]], dtype=np.float32)
        tensor = triton_http.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("tiny-onnx", [tensor], model_version=version)
        expected = onnxruntime.InferenceSession(str(folder / "model.onnx")).run(None, {"input": x})[0]
        np.testing.assert_allclose(result.as_numpy("scores"), expected, rtol=1e-6)
        client.close()
        (child,) = serve.child_pids
    finally:
        assert serve.stop() == 0, serve.text()
    assert wait_dead(child)


def test_registered_llm_is_served_by_one_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    version = register(capsys, "tiny-llm", str(tiny_llama_dir()), "--flavor", "hf-llm", "--alias", "champion")["version"]
    serve = Serve(tmp_path, "--model", "models:/tiny-llm@champion", "--http_port", "0", "--grpc_port", "0")
    try:
        serve.wait_ready(timeout=600)
        url = serve.http_url
        metadata = httpx.get(f"{url}/v2/models/tiny-llm", timeout=30).json()
        assert metadata["versions"] == [version]
        assert [m["id"] for m in httpx.get(f"{url}/openai/v1/models", timeout=30).json()["data"]] == ["tiny-llm"]
        reply = httpx.post(f"{url}/openai/v1/chat/completions", timeout=120, json={
            "model": "tiny-llm", "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 4, "ignore_eos": True, "temperature": 0,
        })
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] == 4
        generated = httpx.post(f"{url}/v2/models/tiny-llm/versions/{version}/generate", timeout=120,
                               json={"text_input": "hello", "parameters": {"max_tokens": 3, "ignore_eos": True}})
        assert generated.status_code == 200, generated.text
        assert generated.json()["model_version"] == version
    finally:
        assert serve.stop() == 0, serve.text()
