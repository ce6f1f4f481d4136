"""Transport-neutral Open Inference Protocol operations over a KServe model repository.

REST and gRPC both call this one class, so a golden request gives the same answer over either
transport. It resolves model versions (KServe answers 501 on versioned paths), checks readiness
by asking the model, validates requests against the declared signature, and keeps Triton-style
statistics.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from importlib import metadata as importlib_metadata
from typing import Any

from kserve.model import BaseKServeModel
from kserve.model_repository import ModelRepository
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferRequest, InferResponse

from kubemind.codecs import grpc_parameters
from kubemind.errors import (
    InternalError,
    KubemindError,
    ModelNotFound,
    ModelNotReady,
    NotImplementedByModel,
    unknown_model_message,
)
from kubemind.model import KubemindModel, ModelStatistics
from kubemind.protocol.shared_memory import (
    BYTE_SIZE,
    OFFSET,
    REGION,
    SharedMemoryRegistry,
    message_uses_shared_memory,
)
from kubemind.telemetry import CURRENT_RECORD, RequestRecord

SERVER_NAME = "kubemind"
# Triton's names for the extensions, so Triton's tools recognise them.
EXTENSIONS = [
    "binary_tensor_data",
    "model_configuration",
    "statistics",
    "model_repository",
    "parameters",
    "system_shared_memory",
]
_UNVERSIONED = ("1",)


def _server_version() -> str:
    try:
        return importlib_metadata.version("kubemind")
    except importlib_metadata.PackageNotFoundError:
        return "0+unknown"


def model_versions(model: BaseKServeModel) -> tuple[str, ...]:
    """A KubemindModel's declared versions; any other kserve model serves one version, "1"."""
    return model.versions if isinstance(model, KubemindModel) else _UNVERSIONED


class InferenceService:
    """The OIP operations: health, metadata, inference, and Triton's extensions."""

    def __init__(self, repository: ModelRepository, server_name: str = SERVER_NAME):
        self.repository = repository
        self.server_name = server_name
        self.version = _server_version()
        self.shared_memory = SharedMemoryRegistry()
        # Statistics for kserve models that are not KubemindModels (they keep none themselves).
        self._foreign_statistics: dict[str, ModelStatistics] = {}

    # -- server -----------------------------------------------------------------------------------
    def server_metadata(self) -> dict[str, Any]:
        return {"name": self.server_name, "version": self.version, "extensions": list(EXTENSIONS)}

    async def server_ready(self) -> bool:
        models = self.repository.get_models()
        if not models:
            return False
        for model in models.values():
            if not await self._is_ready(model):
                return False
        return True

    # -- models -----------------------------------------------------------------------------------
    def lookup(
        self, name: str, version: str | None, candidates: Iterable[str] | None = None
    ) -> tuple[BaseKServeModel, str]:
        """The model and the version a request resolves to.

        `candidates` (model names) also lets a model be found by one of its aliases (the OpenAI
        model name of an LLM). ModelNotFound uses Triton's wording, which clients match on.
        """
        model = self.repository.get_model(name) if name else None
        if model is None and candidates is not None:
            for candidate in candidates:
                found = self.repository.get_model(candidate)
                if found is not None and name in getattr(found, "aliases", ()):
                    model = found
                    break
        if model is None:
            raise ModelNotFound(unknown_model_message(name), param="model")
        if isinstance(model, KubemindModel):
            return model, model.resolve_version(version)
        if version and version not in _UNVERSIONED:
            raise ModelNotFound(unknown_model_message(name, version))
        return model, _UNVERSIONED[0]

    async def is_ready(self, model: BaseKServeModel) -> bool:
        return await self._is_ready(model)

    @staticmethod
    async def _is_ready(model: BaseKServeModel) -> bool:
        # Health asks the model (and through it, its backend), not just a flag.
        return bool(model.ready) and bool(await model.healthy())

    async def model_ready(self, name: str, version: str | None) -> bool:
        model, _ = self.lookup(name, version)
        return await self._is_ready(model)

    async def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        model, _ = self.lookup(name, version)
        if isinstance(model, KubemindModel):
            return model.metadata()
        inputs: list[dict[str, Any]] = getattr(model, "get_input_types", list)()
        outputs: list[dict[str, Any]] = getattr(model, "get_output_types", list)()
        return {"name": name, "versions": list(_UNVERSIONED), "platform": "", "inputs": inputs, "outputs": outputs}

    def model_config(self, name: str, version: str | None) -> dict[str, Any]:
        model, _ = self.lookup(name, version)
        if not isinstance(model, KubemindModel):
            raise NotImplementedByModel(f"model '{name}' publishes no model configuration")
        return model.triton_config()

    def statistics_of(self, model: BaseKServeModel) -> ModelStatistics:
        if isinstance(model, KubemindModel):
            return model.statistics
        return self._foreign_statistics.setdefault(model.name, ModelStatistics())

    def model_statistics(self, name: str | None, version: str | None) -> list[dict[str, Any]]:
        """Statistics for one model (all of its versions share counters), or for every model."""
        if name:
            model, resolved = self.lookup(name, version)
            return [self.statistics_of(model).as_dict(name, resolved)]
        return [
            self.statistics_of(model).as_dict(model_name, model_versions(model)[-1])
            for model_name, model in self.repository.get_models().items()
        ]

    async def repository_index(self, ready_only: bool = False) -> list[dict[str, str]]:
        index = []
        for name, model in self.repository.get_models().items():
            ready = await self._is_ready(model)
            if ready_only and not ready:
                continue
            for version in model_versions(model):
                index.append(
                    {"name": name, "version": version, "state": "READY" if ready else "UNAVAILABLE", "reason": ""}
                )
        return index

    # -- inference --------------------------------------------------------------------------------
    async def infer(
        self, request: InferRequest, headers: dict[str, str], record: RequestRecord
    ) -> tuple[InferResponse, str]:
        """Run one inference; returns the model's response and the version that served it.

        The transport calls `account(record)` once the reply is encoded (or failed), so the
        statistics include encoding time.
        """
        model, version = self.lookup(request.model_name, request.model_version)
        record.model, record.version = model.name, version
        if not await self._is_ready(model):
            raise ModelNotReady(f"model '{model.name}' is not ready")
        if isinstance(model, KubemindModel):
            model.validate_request(request)
            record.batch = model.batch_size(request)
        request.model_version = version
        since = time.perf_counter()
        token = CURRENT_RECORD.set(record)
        try:
            response, _ = await model(request, headers=headers)
        finally:
            CURRENT_RECORD.reset(token)
        record.stage("infer", since)
        # A batching model records its queue time itself; "infer" is what is left of the call.
        record.stages_ns["infer"] -= min(record.stages_ns.get("queue", 0), record.stages_ns["infer"])
        if isinstance(response, dict):
            response = InferResponse.from_rest(response)
        if not isinstance(response, InferResponse):
            raise InternalError(f"model '{model.name}' returned {type(response).__name__}, not an InferResponse")
        return response, version

    def forwards_grpc(self, name: str, version: str | None) -> bool:
        """Whether the model a request names forwards inference as bytes (forward_grpc); False
        for an unknown model, so the decoding path reports the request's own errors first."""
        try:
            model, _ = self.lookup(name, version)
        except KubemindError:
            return False
        return isinstance(model, KubemindModel) and model.forwards_grpc

    async def forward_grpc(
        self, message: pb.ModelInferRequest, headers: dict[str, str], record: RequestRecord
    ) -> bytes | None:
        """The passthrough path of a gRPC inference: a serialised reply, or None when the model
        does not forward (or this request needs decoding: an output into shared memory) and
        infer() must run. Shared-memory inputs are inlined (_inline_shared_inputs).

        Lookup, readiness, the signature check and the statistics are infer()'s; only the tensor
        data is left alone (the backend checks its byte sizes, as Triton does).
        """
        model, version = self.lookup(message.model_name, message.model_version or None)
        if not isinstance(model, KubemindModel) or not model.forwards_grpc:
            return None
        if message_uses_shared_memory(message):
            inlined = self._inline_shared_inputs(message)
            if inlined is None:
                return None
            message = inlined
        record.model, record.version = model.name, version
        if not await self._is_ready(model):
            raise ModelNotReady(f"model '{model.name}' is not ready")
        model.validate_tensors(message.inputs, [o.name for o in message.outputs])
        if model.max_batch_size > 0 and message.inputs and message.inputs[0].shape:
            record.batch = int(message.inputs[0].shape[0])
        since = time.perf_counter()
        reply = await model.forward_grpc(message, version, headers)
        record.stage("infer", since)
        return reply

    def _inline_shared_inputs(self, message: pb.ModelInferRequest) -> pb.ModelInferRequest | None:
        """A copy of `message` whose shared-memory inputs carry their bytes as raw_input_contents
        (one copy out of the region), so the request can still be forwarded as bytes: a same-host
        client (the image transformer's hand-off) saves the wire without costing the decoding.
        None when the decoding path must run: an output goes to a region (it writes the reply
        there), or the other inputs use typed `contents` (raw and typed cannot be mixed)."""
        if any(REGION in output.parameters for output in message.outputs):
            return None
        carried = [tensor for tensor in message.inputs if REGION not in tensor.parameters]
        if len(message.raw_input_contents) != len(carried):
            return None
        forwarded = pb.ModelInferRequest()
        forwarded.CopyFrom(message)
        raw = iter(message.raw_input_contents)
        contents: list[bytes] = []
        for tensor in forwarded.inputs:
            if REGION not in tensor.parameters:
                contents.append(next(raw))
                continue
            contents.append(self.shared_memory.read(tensor.name, grpc_parameters(tensor.parameters) or {}))
            for key in (REGION, OFFSET, BYTE_SIZE):
                if key in tensor.parameters:
                    del tensor.parameters[key]
        forwarded.ClearField("raw_input_contents")
        forwarded.raw_input_contents.extend(contents)
        return forwarded

    def account(self, record: RequestRecord) -> None:
        """Add a finished inference request to its model's statistics."""
        model = self.repository.get_model(record.model) if record.model else None
        if model is None:
            return
        statistics = self.statistics_of(model)
        total_ns = int((time.perf_counter() - record.started) * 1e9)
        if record.status < 400:
            statistics.record_success(record.batch, record.stages_ns, total_ns, record.executions)
        else:
            statistics.record_failure(total_ns)

