"""Wire the Triton predictor together: repository, optional local Triton, and the served models."""

from __future__ import annotations

import tempfile
from pathlib import Path

from kubemind_predictors.triton.embeddings import TritonEmbeddingPredictor
from kubemind_predictors.triton.launcher import TritonInstall, TritonServerProcess
from kubemind_predictors.triton.predictor import TritonConnection, TritonPredictor
from kubemind_predictors.triton.repository import build_repository, shipped_model
from kubemind_predictors.triton.settings import TritonPredictorSettings

# Models that are more than a v2 endpoint.
PREDICTOR_CLASSES: dict[str, type[TritonPredictor]] = {"minilm": TritonEmbeddingPredictor}


def build_models(settings: TritonPredictorSettings) -> list[TritonPredictor]:
    connection = TritonConnection(settings)
    models = []
    for name in settings.models:
        cls = PREDICTOR_CLASSES.get(name, TritonPredictor)
        model = cls(shipped_model(name), connection)
        model.load()
        models.append(model)
    return models


def launch_local_triton(settings: TritonPredictorSettings) -> TritonServerProcess:
    """Build the repository and start tritonserver on the settings' loopback ports (0: free ones,
    written back into the settings so the predictor connects to them)."""
    install = TritonInstall.default()
    repository = settings.model_repository or Path(tempfile.mkdtemp(prefix="kubemind-triton-")) / "repository"
    build_repository(
        repository,
        settings.models,
        settings.onnx_model_dir or install.onnx_dir,
        intra_op_threads=settings.cpu_threads,
    )
    process = TritonServerProcess(
        repository,
        settings.models,
        install=install,
        binary=settings.triton_binary,
        host=settings.triton_host,
        http_port=settings.triton_http_port,
        grpc_port=settings.triton_grpc_port,
        metrics_port=settings.triton_metrics_port,
        startup_timeout=settings.startup_timeout_seconds,
    )
    process.start()
    settings.triton_http_port = process.http_port
    settings.triton_grpc_port = process.grpc_port
    settings.triton_metrics_port = process.metrics_port
    return process
