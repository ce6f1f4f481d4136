"""Wire the Triton predictor together: repository, optional local Triton, and the served models.

Two sources of models: the ones kubemind ships (`--models`, a repository kubemind writes), or a
registered Triton repository (`--model_dir`, what the storage initializer downloaded), which is
served exactly as it is and never written to: on a cluster it is a read-only mount.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from kubemind.errors import InvalidSettings
from kubemind.server import ServerExtension, run
from kubemind.telemetry import configure_logging
from kubemind_predictors.triton.embeddings import TritonEmbeddingPredictor
from kubemind_predictors.triton.launcher import TritonInstall, TritonServerProcess
from kubemind_predictors.triton.predictor import TritonConnection, TritonPredictor
from kubemind_predictors.triton.repository import TritonModelSpec, build_repository, shipped_model
from kubemind_predictors.triton.settings import TritonPredictorSettings
from kubemind_registry.registered_model import tensor_spec
from kubemind_registry.served import read_served_model

# Models that are more than a v2 endpoint.
PREDICTOR_CLASSES: dict[str, type[TritonPredictor]] = {"minilm": TritonEmbeddingPredictor}


def repository_models(repository: Path) -> list[str]:
    """The models of a Triton repository: its folders that hold a config.pbtxt."""
    return sorted(p.parent.name for p in repository.glob("*/config.pbtxt"))


def registered_repository_models(
    settings: TritonPredictorSettings, connection: TritonConnection, model_dir: Path
) -> list[TritonPredictor]:
    """The models of a registered repository, each reporting the MLflow version as its version.

    A repository of one model is served under the registered name (or --model_name when given),
    so `models:/NAME@champion` is called as NAME; a repository of several keeps Triton's names.
    The signature is the registered one until Triton's own metadata replaces it at readiness.
    """
    served = read_served_model(model_dir)
    names = repository_models(model_dir)
    if not names:
        raise InvalidSettings(
            f"--model_dir {model_dir}: no Triton model in it (a folder holding config.pbtxt);"
            f" it was registered with flavor {served.flavor!r}"
        )
    single = len(names) == 1
    models = []
    for folder in names:
        spec = TritonModelSpec(
            name=folder,
            inputs=tuple(tensor_spec(t) for t in served.signature.inputs) if single else (),
            outputs=tuple(tensor_spec(t) for t in served.signature.outputs) if single else (),
            max_batch_size=0,
        )
        name = folder
        if single:
            name = settings.model_name if "model_name" in settings.model_fields_set else served.name
        models.append(TritonPredictor(spec, connection, name=name, registered_version=served.version))
    return models


def build_models(settings: TritonPredictorSettings) -> list[TritonPredictor]:
    connection = TritonConnection(settings)
    if settings.model_dir is not None:
        return registered_repository_models(settings, connection, settings.model_dir)
    models = []
    for name in settings.models:
        cls = PREDICTOR_CLASSES.get(name, TritonPredictor)
        model = cls(shipped_model(name), connection)
        model.load()
        models.append(model)
    return models


def launch_local_triton(settings: TritonPredictorSettings) -> TritonServerProcess:
    """Start tritonserver on the settings' loopback ports (0: free ones, written back into the
    settings so the predictor connects to them), on the registered repository as it is, or on
    one built from the shipped models. Its log (and a built repository) go in a scratch folder
    that stop() removes."""
    install = TritonInstall.default()
    scratch = Path(tempfile.mkdtemp(prefix="kubemind-triton-"))
    if settings.model_dir is not None:
        repository = settings.model_dir
        models = repository_models(repository)
    else:
        repository = settings.model_repository or scratch / "repository"
        models = settings.models
        build_repository(
            repository,
            models,
            settings.onnx_model_dir or install.onnx_dir,
            intra_op_threads=settings.cpu_threads,
        )
    process = TritonServerProcess(
        repository,
        models,
        scratch=scratch,
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


def serve_predictor(settings: TritonPredictorSettings, extensions: Sequence[ServerExtension] = ()) -> int:
    """Serve the Triton predictor (with `extensions`, e.g. the job writer's routes), launching
    and stopping a local tritonserver when the settings ask for one."""
    configure_logging()  # before launching Triton, so its PID is in the log
    # The metrics poller reads Triton every second; httpx would log each read at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    triton = launch_local_triton(settings) if settings.launch_triton else None
    if triton is not None:
        triton.supervise()  # a Triton that dies is relaunched; the predictor answers 503 meanwhile
    try:
        run(settings, build_models(settings), extensions)
    finally:
        if triton is not None:
            triton.stop()
    return 0
