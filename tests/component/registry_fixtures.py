"""A real `mlflow server` for the registry tests: sqlite backend, proxied artifacts, on
127.0.0.1 at a port chosen at run time, stopped by PID. Also small real model folders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubemind.processes import free_port, wait_for_health

MLFLOW_BIN = Path(sys.executable).parent / "mlflow"


@dataclass
class MlflowServer:
    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def start(self, timeout: float = 180.0) -> None:
        # 84 s measured for a cold start on two cores shared by five test runs.
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            [
                str(MLFLOW_BIN), "server",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination", str(self.artifacts_dir),
                "--serve-artifacts", "--workers", "1",
            ],
            stdout=log, stderr=subprocess.STDOUT,
            # Own process group: the server forks workers, and stop() must reach all of them.
            start_new_session=True,
            env={**os.environ, "MLFLOW_TRACKING_URI": ""},
        )
        log.close()
        try:
            wait_for_health(f"{self.url}/health", self.process, timeout, self.log_path, interval=0.3)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            # The test data is throwaway: no need to wait long for a graceful drain.
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def artifact_downloads(self) -> int:
        """GET requests for artifact files the server has logged so far."""
        return sum(
            1
            for line in self.log_path.read_text(errors="replace").splitlines()
            if "GET /api/2.0/mlflow-artifacts/artifacts/" in line
        )


# One server for every registry test module: starting one costs 10-30 s on two busy cores.
# Fixtures imported into several modules are separate fixtures to pytest, so the sharing is
# done here, and the server is stopped when the pytest session ends.
_shared_server: list[MlflowServer] = []


@pytest.fixture(scope="session")
def mlflow_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> MlflowServer:
    if not _shared_server:
        server = MlflowServer(root=tmp_path_factory.mktemp("mlflow-server"), port=free_port())
        server.start()
        request.config.add_cleanup(server.stop)
        _shared_server.append(server)
    return _shared_server[0]


@pytest.fixture()
def registry_env(
    mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Environment pointing kubemind at the test server, with a throwaway KUBEMIND_HOME."""
    env = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "KUBEMIND_HOME": str(tmp_path / "kubemind-home"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def build_onnx_model(folder: Path, hidden: int = 4, weights_array: Any = None) -> Path:
    """A real two-layer ONNX model (MatMul + Relu), written as folder/model.onnx, with a
    labels.txt naming its `hidden` classes; `weights_array` (3 x hidden) or seeded random W."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if weights_array is None:
        weights_array = np.random.default_rng(0).standard_normal((3, hidden))
    weights = numpy_helper.from_array(np.asarray(weights_array, dtype="float32"), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["hidden"]),
         helper.make_node("Relu", ["hidden"], ["scores"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", hidden])],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    (folder / "labels.txt").write_text("\n".join(f"class-{i}" for i in range(hidden)) + "\n")
    return folder


def build_tiny_llm_folder(folder: Path) -> Path:
    """A Hugging Face-shaped LLM folder (config, tokenizer, weights blob) in a nested layout."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(
        '{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 1}\n'
    )
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE"}}\n')
    (folder / "model.safetensors").write_bytes(os.urandom(256 * 1024))
    (folder / "generation").mkdir(exist_ok=True)
    (folder / "generation" / "generation_config.json").write_text('{"max_new_tokens": 16}\n')
    return folder
