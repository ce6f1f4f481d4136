"""`TritonPredictor`: a KServe model that forwards Open Inference Protocol requests to Triton."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferRequest, InferResponse
from prometheus_client.registry import Collector

from kubemind.codecs import NumpyOutput
from kubemind.model import KubemindModel, TensorSpec
from kubemind.oip_client import OIPClient, RetryPolicy, Tensor
from kubemind_predictors.triton.metrics import TritonQueueMetrics
from kubemind_predictors.triton.repository import TritonModelSpec
from kubemind_predictors.triton.settings import TritonPredictorSettings


class TritonConnection:
    """What every TritonPredictor of one server shares: the gRPC client and the metrics poller.

    Started by the first model's start(), stopped by the last model's stop().
    """

    def __init__(self, settings: TritonPredictorSettings):
        self.settings = settings
        self.client = OIPClient(
            f"{settings.triton_host}:{settings.triton_grpc_port}",
            RetryPolicy(
                timeout=settings.request_timeout_seconds,
                retry_budget=settings.retry_budget,
                backoff=settings.retry_backoff_seconds,
                cooldown=settings.unavailable_cooldown_seconds,
            ),
        )
        self.metrics = TritonQueueMetrics(
            f"http://{settings.triton_host}:{settings.triton_metrics_port}/metrics"
        )
        self._users = 0
        self._closing: asyncio.Task[None] | None = None

    def acquire(self) -> None:
        self._users += 1
        if self._users == 1:
            self.client.connect()
            self.metrics.start()

    def release(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0:
            self.metrics.stop()
            # KServe's stop() is synchronous: closing the channel is scheduled on the loop.
            with contextlib.suppress(RuntimeError):  # no loop left: the channel dies with it
                self._closing = asyncio.get_running_loop().create_task(self.client.close())


class TritonPredictor(KubemindModel):
    """One Triton model served under the same name, over REST and gRPC alike."""

    platform = "triton"

    def __init__(
        self,
        spec: TritonModelSpec,
        connection: TritonConnection,
        name: str | None = None,
        registered_version: str | None = None,
    ):
        super().__init__(
            name or spec.name,
            versions=(registered_version or "1",),
            inputs=spec.public_inputs(),
            outputs=spec.outputs,
            max_batch_size=spec.max_batch_size,
        )
        self.spec = spec
        self.connection = connection
        self.propagate = frozenset(connection.settings.propagate_headers)
        # The shipped spec until Triton has answered once; then Triton's own metadata.
        self._signature_from_triton = False
        # A registered model's version is the registry's (what was pinned), not Triton's folder's.
        self.registered_version = registered_version

    @property
    def client(self) -> OIPClient:
        return self.connection.client

    def load(self) -> bool:
        # The artifact lives in Triton's repository; readiness is Triton's (see healthy()).
        self.ready = True
        return self.ready

    def start(self) -> None:
        self.connection.acquire()

    def collectors(self) -> Sequence[Collector]:
        return (self.connection.metrics,)

    def stop(self) -> None:
        self.connection.release()

    async def healthy(self) -> bool:
        ready = await self.client.model_ready(self.spec.name)
        if ready and not self._signature_from_triton:
            await self.refresh_signature()
        return ready

    async def refresh_signature(self) -> None:
        """Take inputs and outputs from Triton's model metadata (the source of truth)."""
        metadata = await self.client.model_metadata(self.spec.name)

        def specs(tensors: object, flattened: tuple[str, ...]) -> tuple[TensorSpec, ...]:
            result = []
            for t in tensors:  # type: ignore[attr-defined]
                shape = tuple(int(d) for d in t.shape)
                result.append(TensorSpec(t.name, t.datatype, shape[:-1] if t.name in flattened else shape))
            return tuple(result)

        self.inputs = specs(metadata.inputs, self.spec.flattened_inputs)
        self.outputs = specs(metadata.outputs, ())
        self._inputs_by_name = {spec.name: spec for spec in self.inputs}
        if self.registered_version is None:
            self.versions = tuple(metadata.versions) or self.versions
        self._signature_from_triton = True

    def _forwarded_headers(self, headers: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
        if not headers:
            return ()
        return tuple((k.lower(), v) for k, v in headers.items() if k.lower() in self.propagate)

    @property
    def forwards_grpc(self) -> bool:
        return self.connection.settings.passthrough

    async def forward_grpc(self, message: pb.ModelInferRequest, version: str, headers: dict[str, str]) -> bytes:
        # Triton's name and version for the model, and its [-1, 1] shape for flattened inputs (as
        # predict() reshapes them), only in the bytes sent: the request itself stays the client's
        # (the payload logger records it after the call).
        served = message.model_name, message.model_version
        flattened = [tensor for tensor in message.inputs if tensor.name in self.spec.flattened_inputs]
        message.model_name, message.model_version = self.spec.name, ""
        for tensor in flattened:
            tensor.shape.append(1)
        payload = message.SerializeToString()
        message.model_name, message.model_version = served
        for tensor in flattened:
            del tensor.shape[-1]
        reply = await self.client.forward_infer(self.spec.name, payload, metadata=self._forwarded_headers(headers))
        # Protobuf keeps the last value of a scalar field that appears twice: appending the served name and
        # version relabels Triton's reply without parsing it.
        return reply + pb.ModelInferResponse(model_name=self.name, model_version=version).SerializeToString()

    async def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        inputs = []
        for tensor in payload.inputs:
            array = tensor.as_numpy()
            if tensor.name in self.spec.flattened_inputs:
                array = array.reshape(-1, 1)
            inputs.append(Tensor(tensor.name, tensor.datatype, array))
        requested = [o.name for o in payload.request_outputs or ()]
        outputs = await self.client.infer(
            self.spec.name,
            inputs,
            request_id=payload.id or "",
            outputs=requested,
            metadata=self._forwarded_headers(headers),
        )
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[NumpyOutput(o.name, o.array, o.datatype) for o in outputs],
            model_version=payload.model_version,
        )
