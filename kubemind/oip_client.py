"""The core Open Inference Protocol gRPC client: one long-lived channel to a v2 server (Triton, a
kubemind predictor), with deadlines, retries and fail-fast. The Triton predictor, the image
transformer and the benchmarks all use it.

Uses KServe's generated v2 stubs (`kserve.protocol.grpc`) on a `grpc.aio` channel, never
`tritonclient.grpc` (both register the `inference` protobuf package; they cannot share a process).

Failure policy, per request:
- every call carries the request's deadline; retries happen within it, never past it;
- only UNAVAILABLE is retried (Triton restarting, connection refused), with exponential backoff,
  at most `retry_budget` times;
- after an UNAVAILABLE that used up the retries, the client "opens" for a cool-down: requests
  fail at once with BackendUnavailable instead of queueing on a dead backend. The first request
  after the cool-down probes Triton again, so the predictor recovers by itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from kubemind.backend import InferenceBackend, Tensor
from kubemind.codecs import DATATYPES, array_from_bytes, array_to_bytes
from kubemind.errors import (
    BackendTimeout,
    BackendUnavailable,
    InternalError,
    InvalidInput,
    KubemindError,
    ModelNotFound,
)
from kubemind.protocol import triton_extensions_pb2 as ext
from kubemind.protocol.shared_memory import BYTE_SIZE, OFFSET, REGION
from kubemind.tracing import client_span, outbound_metadata

logger = logging.getLogger("kubemind.oip_client")

HEALTH_TTL_SECONDS = 1.0

_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.enable_retries", 0),  # retries are ours: bounded and deadline-aware
    # Reconnect quickly once Triton is back instead of waiting out gRPC's default backoff (up to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.min_reconnect_backoff_ms", 100),
]


@dataclass(frozen=True)
class SharedTensor:
    """An input whose bytes are already in a system shared-memory region registered with the
    server: the request names the window instead of carrying the data."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    region: str
    byte_size: int
    offset: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    timeout: float
    retry_budget: int
    backoff: float
    cooldown: float


def error_from_rpc(error: grpc.aio.AioRpcError, model: str) -> KubemindError:
    """The server's gRPC status as kubemind's error, keeping the server's message."""
    code, details = error.code(), error.details() or str(error.code())
    if code == grpc.StatusCode.UNAVAILABLE:
        return BackendUnavailable(f"the inference server is unavailable for model '{model}': {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return BackendTimeout(f"the inference server did not answer for model '{model}' in time")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidInput(details)
    if code == grpc.StatusCode.NOT_FOUND:
        return ModelNotFound(details)
    return InternalError(f"the inference server failed for model '{model}': {code.name}: {details}")


_MODEL_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
_RAW_INPUT_FIELD = pb.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number
_RAW_INPUT_TAG = bytes([(_RAW_INPUT_FIELD << 3) | 2])  # wire type 2: length-delimited


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode_infer_request(
    model: str, inputs: Sequence[Tensor | SharedTensor], request_id: str = "", outputs: Sequence[str] = ()
) -> bytes:
    """A serialised ModelInferRequest with the tensor data copied exactly once.

    Building the message with protobuf would copy each tensor three times (to bytes, into the
    message, into the wire buffer): for an image batch that is most of the predictor's own cost.
    Protobuf accepts fields in any order, so the header is serialised by protobuf and the
    raw_input_contents entries are appended as length-delimited fields straight from numpy.
    """
    header = pb.ModelInferRequest(model_name=model, id=request_id)
    parts: list[bytes | memoryview] = []
    for tensor in inputs:
        if isinstance(tensor, SharedTensor):
            # No raw_input_contents entry: those are positional over the inputs that carry data.
            shared = header.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
            shared.parameters[REGION].string_param = tensor.region
            shared.parameters[BYTE_SIZE].int64_param = tensor.byte_size
            shared.parameters[OFFSET].int64_param = tensor.offset
            continue
        header.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.array.shape))
        if tensor.datatype == "BYTES":
            data: bytes | memoryview = array_to_bytes(tensor.array, "BYTES")
        else:
            array = np.ascontiguousarray(tensor.array, dtype=DATATYPES[tensor.datatype])
            data = array.data.cast("B")
        parts += [_RAW_INPUT_TAG, _varint(len(data)), data]
    for name in outputs:
        header.outputs.add(name=name)
    return b"".join([header.SerializeToString(), *parts])


class OIPClient:
    """Async Open Inference Protocol client for one v2 gRPC server, shared by all its models."""

    def __init__(self, url: str, policy: RetryPolicy):
        self.url = url
        self.policy = policy
        self._channel: grpc.aio.Channel | None = None
        self._stub: GRPCInferenceServiceStub | None = None
        self._model_infer: Any = None
        self._model_infer_raw: Any = None
        self._open_until = 0.0  # monotonic time until which calls fail fast
        self._answered_at = -HEALTH_TTL_SECONDS  # monotonic time of the last successful call
        self.in_flight = 0

    def connect(self) -> None:
        """Open the channel (needs the running event loop); idempotent."""
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.url, options=_CHANNEL_OPTIONS)
            self._stub = GRPCInferenceServiceStub(self._channel)
            # ModelInfer with requests we serialise ourselves (see encode_infer_request).
            self._model_infer = self._channel.unary_unary(
                _MODEL_INFER_METHOD,
                request_serializer=None,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            # ModelInfer bytes in, bytes out: the passthrough hop (forward_infer) parses nothing.
            self._model_infer_raw = self._channel.unary_unary(
                _MODEL_INFER_METHOD, request_serializer=None, response_deserializer=None
            )

    async def start(self) -> None:
        self.connect()

    async def stop(self) -> None:
        await self.close()

    async def healthy(self) -> bool:
        """Server readiness (the Backend seam); model readiness is model_ready()."""
        if self._stub is None or self._open_until > time.monotonic():
            return False
        try:
            reply = await self._stub.ServerReady(pb.ServerReadyRequest(), timeout=1.0, wait_for_ready=False)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.ready)

    async def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        self._model_infer = self._model_infer_raw = None
        if channel is not None:
            await channel.close()

    @property
    def stub(self) -> GRPCInferenceServiceStub:
        if self._stub is None:
            raise BackendUnavailable(f"the client for {self.url} is not started")
        return self._stub

    def _fail_fast(self, model: str) -> None:
        remaining = self._open_until - time.monotonic()
        if remaining > 0:
            raise BackendUnavailable(
                f"the inference server is unavailable for model '{model}' (failing fast for {remaining:.2f}s more)"
            )

    async def _call(
        self,
        model: str,
        method: Any,
        message: Any,
        timeout: float | None,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> Any:
        """One RPC under the retry policy; returns the reply or raises a KubemindError."""
        self._fail_fast(model)
        deadline = time.monotonic() + (timeout or self.policy.timeout)
        backoff = self.policy.backoff
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendTimeout(f"the inference server did not answer for model '{model}' within the deadline")
            try:
                # wait_for_ready=False: a dead Triton is UNAVAILABLE now, not a hang until the deadline.
                reply = await method(
                    message, timeout=remaining, metadata=metadata, wait_for_ready=False
                )
                self._open_until = 0.0
                self._answered_at = time.monotonic()
                return reply
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise error_from_rpc(error, model) from None
                if attempt >= self.policy.retry_budget or backoff >= deadline - time.monotonic():
                    self._open_until = time.monotonic() + self.policy.cooldown
                    raise error_from_rpc(error, model) from None
            attempt += 1
            await asyncio.sleep(backoff)
            backoff *= 2

    async def infer(
        self,
        model: str,
        inputs: Sequence[Tensor | SharedTensor],
        *,
        request_id: str = "",
        outputs: Sequence[str] = (),
        timeout: float | None = None,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> list[Tensor]:
        """Run one inference; outputs come back as numpy arrays. A SharedTensor input is read by
        the server from its registered region (keep the region's bytes until this returns)."""
        if self._model_infer is None:
            raise BackendUnavailable(f"the client for {self.url} is not started")
        message = encode_infer_request(model, inputs, request_id, outputs)
        self.in_flight += 1
        try:
            with client_span(f"ModelInfer {model}", self._span_attributes("ModelInfer", model)):
                reply = await self._call(model, self._model_infer, message, timeout, outbound_metadata(metadata))
        finally:
            self.in_flight -= 1
        return [
            Tensor(out.name, out.datatype, array_from_bytes(out.name, out.datatype, list(out.shape), raw))
            for out, raw in zip(reply.outputs, reply.raw_output_contents, strict=True)
        ]

    async def forward_infer(
        self,
        model: str,
        message: bytes,
        *,
        timeout: float | None = None,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> bytes:
        """Send a serialised ModelInferRequest as it is and return the serialised reply: the
        passthrough hop, under the same deadline, retries and fail-fast as infer()."""
        if self._model_infer_raw is None:
            raise BackendUnavailable(f"the client for {self.url} is not started")
        self.in_flight += 1
        try:
            with client_span(f"ModelInfer {model}", self._span_attributes("ModelInfer", model)):
                reply: bytes = await self._call(model, self._model_infer_raw, message, timeout, outbound_metadata(metadata))
        finally:
            self.in_flight -= 1
        return reply

    # -- the system shared-memory extension (Triton's, kubemind's own server speaks it too) --------
    def _extension(self, method: str, reply: type[Any]) -> Any:
        if self._channel is None:
            raise BackendUnavailable(f"the client for {self.url} is not started")
        return self._channel.unary_unary(
            f"/inference.GRPCInferenceService/{method}",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=reply.FromString,
        )

    async def register_system_shared_memory(
        self, name: str, key: str, byte_size: int, offset: int = 0, timeout: float | None = None
    ) -> None:
        """Register a POSIX shared-memory segment of this host as region `name`. Refused with
        InvalidInput where the server cannot open `key` (it runs on another host or in another
        /dev/shm), with InternalError where it does not implement the extension."""
        method = self._extension("SystemSharedMemoryRegister", ext.SystemSharedMemoryRegisterResponse)
        request = ext.SystemSharedMemoryRegisterRequest(name=name, key=key, offset=offset, byte_size=byte_size)
        await self._call(name, method, request, timeout, outbound_metadata(()))

    async def unregister_system_shared_memory(self, name: str = "", timeout: float | None = None) -> None:
        """Unregister region `name` (all regions where empty: Triton's semantics)."""
        method = self._extension("SystemSharedMemoryUnregister", ext.SystemSharedMemoryUnregisterResponse)
        await self._call(name, method, ext.SystemSharedMemoryUnregisterRequest(name=name), timeout, outbound_metadata(()))

    async def system_shared_memory_registered(self, name: str, timeout: float | None = None) -> bool:
        """Whether the server has region `name` registered (it answers an unknown one with an error)."""
        method = self._extension("SystemSharedMemoryStatus", ext.SystemSharedMemoryStatusResponse)
        try:
            reply = await self._call(name, method, ext.SystemSharedMemoryStatusRequest(name=name), timeout, outbound_metadata(()))
        except (InvalidInput, ModelNotFound):
            return False
        return name in reply.regions

    async def model_metadata(self, model: str, timeout: float | None = None) -> Any:
        request = pb.ModelMetadataRequest(name=model)
        with client_span(f"ModelMetadata {model}", self._span_attributes("ModelMetadata", model)):
            return await self._call(model, self.stub.ModelMetadata, request, timeout, outbound_metadata(()))

    def _span_attributes(self, method: str, model: str) -> dict[str, str]:
        return {"rpc.system": "grpc", "rpc.service": "inference.GRPCInferenceService", "rpc.method": method,
                "server.address": self.url, "kubemind.model": model}  # fmt: skip

    async def model_ready(self, model: str, timeout: float = 1.0) -> bool:
        """Readiness from the server; False (never an exception) when it cannot answer.

        Servers ask readiness before every inference; a server that answered within the last
        HEALTH_TTL_SECONDS counts as ready without another round trip, so health checks cost no
        throughput while a dead server is still noticed within that window (or at once, by the
        failing call itself).
        """
        now = time.monotonic()
        if self._stub is None or self._open_until > now:
            return False
        if now - self._answered_at < HEALTH_TTL_SECONDS:
            return True
        try:
            reply = await self._stub.ModelReady(
                pb.ModelReadyRequest(name=model), timeout=timeout, wait_for_ready=False
            )
        except grpc.aio.AioRpcError:
            return False
        if reply.ready:
            self._answered_at = time.monotonic()
        return bool(reply.ready)


_conforms: type[InferenceBackend] = OIPClient  # mypy checks the client implements the seam
