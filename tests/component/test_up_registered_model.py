"""`kubemind up` of an InferenceService whose storageUri is a registered model (`models:/`):
initialized by the registry's storage initializer into the node cache, served by the runtime
the spec names, and not downloaded again by a second `up`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http

from kubemind.cli import main as kubemind_main
from tests.component.registry_fixtures import build_onnx_model
from tests.component.up_fixtures import Up, cli, write_registered_model_overlay


def test_a_registered_model_is_initialized_into_the_node_cache_once_and_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the embedded store under KUBEMIND_HOME
    monkeypatch.setenv("KUBEMIND_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert kubemind_main(["models", "register", "scorer", str(build_onnx_model(tmp_path / "model")),
                          "--flavor", "onnx"]) == 0
    version = json.loads(capsys.readouterr().out)["version"]
    overlay = write_registered_model_overlay(tmp_path / "overlay", f"models:/scorer/{version}")
    for attempt in ("first", "second"):
        up = Up(overlay, home)
        try:
            state = up.wait_ready()
            client = triton_http.InferenceServerClient(
                f"127.0.0.1:{state['gateway']['http_port']}/serving/kubemind/scorer")
            tensor = triton_http.InferInput("input", [1, 3], "FP32")
            tensor.set_data_from_numpy(np.ones((1, 3), dtype=np.float32))
            result = client.infer("scorer", [tensor])
            assert result.as_numpy("scores").shape == (1, 4)
            assert result.get_response()["model_version"] == str(version)  # the registry's version
        finally:
            assert up.stop() == 0
        downloaded = "nothing downloaded" not in up.text()
        assert downloaded == (attempt == "first"), up.text()
    assert (home / "models" / "scorer" / str(version) / "model.onnx").is_file()
    assert cli(home, "status").stdout.strip() == "kubemind up is not running"
    assert os.environ["KUBEMIND_HOME"] == str(home)
