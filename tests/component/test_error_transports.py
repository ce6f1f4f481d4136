"""Every kubemind error class reaches REST and gRPC clients with its status and its message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from http import HTTPStatus

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from kserve.protocol.infer_type import InferRequest, InferResponse

from kubemind import errors, runtimes
from kubemind.local.up import gateway as up_gateway
from kubemind.local.up import kube_api as up_kube_api
from kubemind.local.up import specs as up_specs
from kubemind.model import KubemindModel, TensorSpec
from kubemind.release import errors as release_errors
from kubemind.server import KubemindServer
from kubemind.settings import ComponentSettings
from kubemind_registry import errors as registry_errors
from kubemind_transformers.rag import corpus as rag_corpus
from kubemind_transformers.rag import features as rag_features
from kubemind_transformers.rag import index as rag_index
from kubemind_transformers.rag import store as rag_store
from kubemind_transformers.router import conditions as router_conditions
from kubemind_transformers.router import executor as router_executor
from kubemind_transformers.router import graph as router_graph
from kubemind_transformers.router import steps as router_steps
from kubemind_workers import errors as jobs_errors

# Every error class, listed explicitly: walking __subclasses__() sees only the modules imported
# so far, and missed the registry's errors. test_the_list_is_complete keeps this list whole.
ERROR_CLASSES: list[type[errors.KubemindError]] = [
    errors.KubemindError,
    errors.InvalidInput,
    errors.InvalidSettings,
    errors.ModelNotFound,
    errors.ModelNotReady,
    errors.ServerNotReady,
    errors.BackendUnavailable,
    errors.BackendTimeout,
    errors.PayloadTooLarge,
    errors.UnsupportedMediaType,
    errors.NotImplementedByModel,
    errors.InternalError,
    runtimes.NoRuntime,
    registry_errors.InvalidModelUri,
    registry_errors.RegistryUnavailable,
    registry_errors.DownloadStalled,
    registry_errors.ModelVersionNotFound,
    registry_errors.NotAKubemindModel,
    registry_errors.ArtifactIntegrityError,
    registry_errors.UnsafeArtifactPath,
    registry_errors.StalePins,
    router_steps.StepFailed,
    router_executor.NoBranchMatched,
    router_graph.GraphError,
    router_conditions.ConditionSyntaxError,
    jobs_errors.JobNotFound,
    jobs_errors.BrokerUnavailable,
    up_specs.NotRunnableLocally,
    up_specs.SpecsRejected,
    up_gateway.GatewayError,
    up_kube_api.ApiStatusError,
    release_errors.PolicyRejected,
    release_errors.PrometheusUnavailable,
    release_errors.KubernetesApiError,
    rag_corpus.CorpusError,
    rag_store.MilvusUnavailable,
    rag_features.FeastUnavailable,
    rag_index.EmbedderMismatch,
]


def all_error_classes() -> list[type[errors.KubemindError]]:
    return ERROR_CLASSES


def test_the_list_is_complete() -> None:
    """Every KubemindError subclass defined in the packages' source is in ERROR_CLASSES."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    names = {cls.__name__ for cls in ERROR_CLASSES}
    base_names = set(names)
    found: set[str] = set()
    pattern = re.compile(r"^class (\w+)\((\w+)\):", re.M)
    for folder in ("kubemind", "predictors", "transformers", "registry", "workers"):
        for source in (root / folder).rglob("*.py"):
            for name, base in pattern.findall(source.read_text()):
                if base in base_names:
                    found.add(name)
    assert found <= names, f"error classes missing from ERROR_CLASSES: {sorted(found - names)}"


def test_stale_pins_is_a_failed_precondition() -> None:
    assert errors.grpc_code(registry_errors.StalePins.status) == grpc.StatusCode.FAILED_PRECONDITION


class RaisingModel(KubemindModel):
    """Raises the kubemind error class named in its BYTES input."""

    def __init__(self) -> None:
        super().__init__("raiser", inputs=[TensorSpec("error", "BYTES", (1,))])
        self.ready = True

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        name = payload.inputs[0].as_numpy()[0].decode()
        if name == "bug":
            return 1 // 0  # type: ignore[return-value]
        error_class = next(c for c in all_error_classes() if c.__name__ == name)
        raise error_class(f"{name} raised on purpose")


@pytest.fixture
async def server() -> AsyncIterator[KubemindServer]:
    settings = ComponentSettings(host="127.0.0.1", http_port=0, grpc_port=0, log_requests=False, grace_period_seconds=0)
    running = KubemindServer(settings, [RaisingModel()])
    await running.start()
    yield running
    await running.stop()


@pytest.mark.parametrize("error_class", all_error_classes(), ids=lambda c: c.__name__)
async def test_error_over_rest(server: KubemindServer, error_class: type[errors.KubemindError]) -> None:
    body = {"inputs": [{"name": "error", "datatype": "BYTES", "shape": [1], "data": [error_class.__name__]}]}
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"http://127.0.0.1:{server.http_port}/v2/models/raiser/infer", json=body)
    assert reply.status_code == error_class.status
    assert reply.json() == {"error": f"{error_class.__name__} raised on purpose"}


@pytest.mark.parametrize("error_class", all_error_classes(), ids=lambda c: c.__name__)
async def test_error_over_grpc(server: KubemindServer, error_class: type[errors.KubemindError]) -> None:
    request = pb.ModelInferRequest(model_name="raiser")
    request.inputs.add(name="error", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        error_class.__name__.encode()
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert caught.value.code() == errors.grpc_code(error_class.status)
    assert caught.value.details() == f"{error_class.__name__} raised on purpose"


def test_status_table_covers_the_documented_pairs() -> None:
    assert errors.grpc_code(HTTPStatus.BAD_REQUEST) == grpc.StatusCode.INVALID_ARGUMENT
    assert errors.grpc_code(HTTPStatus.NOT_FOUND) == grpc.StatusCode.NOT_FOUND
    assert errors.grpc_code(HTTPStatus.SERVICE_UNAVAILABLE) == grpc.StatusCode.UNAVAILABLE
    assert errors.grpc_code(HTTPStatus.GATEWAY_TIMEOUT) == grpc.StatusCode.DEADLINE_EXCEEDED


def test_kserve_errors_translate_to_kubemind_statuses() -> None:
    from kserve import errors as kserve_errors

    assert errors.as_kubemind_error(kserve_errors.InvalidInput("bad")).status == HTTPStatus.BAD_REQUEST
    assert errors.as_kubemind_error(kserve_errors.ModelNotFound("m")).status == HTTPStatus.NOT_FOUND
    assert errors.as_kubemind_error(kserve_errors.ModelNotReady("m")).status == HTTPStatus.SERVICE_UNAVAILABLE
    unexpected = errors.as_kubemind_error(ZeroDivisionError("division by zero"))
    assert unexpected.status == HTTPStatus.INTERNAL_SERVER_ERROR and "ZeroDivisionError" in unexpected.message


async def test_unexpected_exception_is_500_internal_and_server_keeps_serving(
    server: KubemindServer, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"inputs": [{"name": "error", "datatype": "BYTES", "shape": [1], "data": ["bug"]}]}
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"http://127.0.0.1:{server.http_port}/v2/models/raiser/infer", json=body)
        assert reply.status_code == 500
        assert reply.json() == {"error": "internal error: ZeroDivisionError: integer division or modulo by zero"}
        assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records), "traceback logged"
        request = pb.ModelInferRequest(model_name="raiser")
        request.inputs.add(name="error", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"bug")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert (await client.get(f"http://127.0.0.1:{server.http_port}/v2/health/live")).status_code == 200
