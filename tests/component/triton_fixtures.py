"""Real Triton, TritonPredictor and image transformer processes for the component tests.

Each test module starts one Triton (with only the models it needs) from a module-scoped fixture
built on these context managers; everything binds 127.0.0.1 on ports chosen at run time and is
stopped by PID. Photos come from packages: matplotlib's grace_hopper.jpg, scikit-image's coffee
and chelsea.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubemind.processes import ServerProcess, running_server
from kubemind_predictors.triton.launcher import TritonInstall, TritonServerProcess
from kubemind_predictors.triton.repository import build_repository

STOCK_CLIENT = Path(__file__).with_name("triton_stock_client.py")
PREDICTOR_DEADLINE_SECONDS = 5.0


def require_triton() -> TritonInstall:
    """Skip (with the reason) where `make install` has not unpacked Triton and the ONNX models."""
    install = TritonInstall.default()
    if not install.binary.is_file() or not (exported_models(install) / "efficientnet_lite0.onnx").is_file():
        pytest.skip(f"Triton not installed under {install.home}; run `make install`")
    return install


def exported_models(install: TritonInstall) -> Path:
    """The ONNX folder the tests serve: the predictor's own setting (KUBEMIND_TRITON_ONNX_MODEL_DIR)
    where set, so an export by a changed export.py can be tested before `make install` replaces
    the venv's; else the install's."""
    configured = os.environ.get("KUBEMIND_TRITON_ONNX_MODEL_DIR")
    return Path(configured) if configured else install.onnx_dir


@contextlib.contextmanager
def running_triton(workdir: Path, models: Sequence[str]) -> Iterator[TritonServerProcess]:
    install = require_triton()
    repository = build_repository(workdir / "repository", models, exported_models(install))
    triton = TritonServerProcess(repository, models, install=install, startup_timeout=90)
    with triton:
        yield triton


def restart_triton(stopped: TritonServerProcess) -> TritonServerProcess:
    """A new Triton on the same ports and repository (what a restarted Triton pod looks like)."""
    triton = TritonServerProcess(
        stopped.repository,
        stopped.models,
        install=stopped.install,
        http_port=stopped.http_port,
        grpc_port=stopped.grpc_port,
        metrics_port=stopped.metrics_port,
        startup_timeout=90,
    )
    return triton.start()


def triton_connection_args(triton: TritonServerProcess) -> list[str]:
    """The flags that point a Triton predictor (or the job writer built on it) at `triton`."""
    return [
        "--models", ",".join(triton.models),
        "--triton_host", triton.host,
        "--triton_grpc_port", str(triton.grpc_port),
        "--triton_http_port", str(triton.http_port),
        "--triton_metrics_port", str(triton.metrics_port),
    ]  # fmt: skip


@contextlib.contextmanager
def running_predictor(triton: TritonServerProcess, workdir: Path, *extra: str) -> Iterator[ServerProcess]:
    args = [*triton_connection_args(triton), "--request_timeout_seconds", str(PREDICTOR_DEADLINE_SECONDS), *extra]
    with running_server("kubemind_predictors.triton", args, workdir / "predictor.log") as server:
        yield server


@contextlib.contextmanager
def running_transformer(predictor_address: str, workdir: Path, *extra: str) -> Iterator[ServerProcess]:
    """The image transformer calling `predictor_address` over gRPC: a Triton predictor's, or
    Triton's own (what components/triton-direct deploys)."""
    args = ["--model_name", "efficientnet_lite0", "--predictor_host", predictor_address, *extra]
    with running_server("kubemind_transformers.image", args, workdir / "transformer.log") as server:
        yield server


def photo(name: str) -> bytes:
    """JPEG bytes of a packaged photo: grace_hopper, coffee or chelsea."""
    if name == "grace_hopper":
        import matplotlib

        return (Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").read_bytes()
    import skimage.data
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(getattr(skimage.data, name)()).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def stock_client(grpc_address: str, *requests: dict[str, Any]) -> list[dict[str, Any]]:
    """Run requests with the stock `tritonclient.grpc` in its own process (it cannot share one
    with kserve); see triton_stock_client.py for the request and answer format."""
    completed = subprocess.run(
        [sys.executable, str(STOCK_CLIENT), grpc_address],
        input=json.dumps(list(requests)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return list(json.loads(completed.stdout))


def as_array(answer: dict[str, Any], name: str) -> np.ndarray:
    return np.array(answer["outputs"][name])
