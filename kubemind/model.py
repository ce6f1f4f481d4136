"""The model base class every kubemind predictor and transformer builds on.

`KubemindModel` is a `kserve.Model` that declares its signature (tensor specs), the versions it
serves, and its batching limit. From that one declaration come the v2 model metadata, Triton's
model-configuration view, request validation, and per-model statistics — so a subclass only
implements `predict` (and `load`/`start`/`stop` for its resources).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kserve import Model
from kserve.metrics import POST_HIST_TIME, PRE_HIST_TIME, PREDICT_HIST_TIME, get_labels
from kserve.model import InferenceVerb
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferRequest

from kubemind.datatypes import BY_NAME, V2_NAMES
from kubemind.errors import InvalidInput, ModelNotFound, unknown_model_message

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from kubemind.protocol.pipeline import Route


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model signature. -1 in `shape` is a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.datatype not in V2_NAMES:
            raise ValueError(f"tensor {self.name!r}: unknown datatype {self.datatype!r}")

    def as_metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_metadata(cls, entry: dict[str, Any]) -> TensorSpec:
        return cls(str(entry["name"]), str(entry["datatype"]), tuple(int(d) for d in entry["shape"]))


@dataclass
class DurationStat:
    """Triton's StatisticDuration: a count and the total nanoseconds spent."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class ModelStatistics:
    """Per-model counters in the shape of Triton's statistics extension."""

    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    success: DurationStat = field(default_factory=DurationStat)
    fail: DurationStat = field(default_factory=DurationStat)
    queue: DurationStat = field(default_factory=DurationStat)
    compute_input: DurationStat = field(default_factory=DurationStat)
    compute_infer: DurationStat = field(default_factory=DurationStat)
    compute_output: DurationStat = field(default_factory=DurationStat)

    def record_success(
        self, batch_size: int, stages_ns: dict[str, int], total_ns: int, executions: int = 1
    ) -> None:
        self.inference_count += batch_size
        self.execution_count += executions
        self.last_inference_ms = int(time.time() * 1000)
        self.success.add(total_ns)
        self.queue.add(stages_ns.get("queue", 0))
        self.compute_input.add(stages_ns.get("decode", 0))
        self.compute_infer.add(stages_ns.get("infer", 0))
        self.compute_output.add(stages_ns.get("encode", 0))

    def record_failure(self, total_ns: int) -> None:
        self.fail.add(total_ns)

    def as_dict(self, name: str, version: str) -> dict[str, Any]:
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.as_dict(),
                "fail": self.fail.as_dict(),
                "queue": self.queue.as_dict(),
                "compute_input": self.compute_input.as_dict(),
                "compute_infer": self.compute_infer.as_dict(),
                "compute_output": self.compute_output.as_dict(),
                "cache_hit": DurationStat().as_dict(),
                "cache_miss": DurationStat().as_dict(),
            },
            "batch_stats": [],
        }


class KubemindModel(Model):
    """A kserve.Model with a declared signature, versions and statistics.

    Subclasses implement `predict(InferRequest, headers) -> InferResponse`. Requests reaching
    `predict` have already been checked against `inputs` (names, datatypes, shapes) by the
    protocol layer, for REST and gRPC alike.
    """

    platform: str = "kubemind"
    backend: str = "python"
    aliases: tuple[str, ...] = ()
    """Other names the model answers to where a request names it in its body (OpenAI's `model`)."""

    def __init__(
        self,
        name: str,
        *,
        versions: Sequence[str] = ("1",),
        inputs: Iterable[TensorSpec] = (),
        outputs: Iterable[TensorSpec] = (),
        max_batch_size: int = 0,
    ):
        super().__init__(name)
        if not versions:
            raise ValueError(f"model {name!r} must declare at least one version")
        self.versions: tuple[str, ...] = tuple(str(v) for v in versions)
        self.inputs: tuple[TensorSpec, ...] = tuple(inputs)
        self.outputs: tuple[TensorSpec, ...] = tuple(outputs)
        self.max_batch_size = max_batch_size
        self.statistics = ModelStatistics()
        self._inputs_by_name = {spec.name: spec for spec in self.inputs}

    # -- the call ---------------------------------------------------------------------------------
    async def __call__(
        self, body: Any, headers: dict[str, str] | None = None, verb: InferenceVerb = InferenceVerb.PREDICT
    ) -> tuple[Any, dict[str, str]]:
        """kserve.Model.__call__'s steps (preprocess, validate, predict, postprocess) and KServe's
        per-stage histograms, with the labelled histograms and each handler's kind looked up once
        per model instead of on every request: profiled, those lookups were most of the base
        class's cost on the hot path (issue 17). Explain keeps the base class's path."""
        if verb != InferenceVerb.PREDICT or self.enable_latency_logging:
            return await super().__call__(body, headers, verb)
        steps = self._call_steps or self._resolve_call_steps()
        pre_hist, predict_hist, post_hist, pre_async, predict_async, post_async = steps
        response_headers: dict[str, str] = {}
        # predict and postprocess take the response headers only from a model that asks for them
        extra = (response_headers,) if self.required_response_headers else ()
        start = time.perf_counter()
        payload = await self.preprocess(body, headers) if pre_async else self.preprocess(body, headers)
        now = time.perf_counter()
        pre_hist.observe(now - start)
        payload = self.validate(payload)
        start = now
        call = self.predict(payload, headers, *extra)
        response = await call if predict_async else call
        now = time.perf_counter()
        predict_hist.observe(now - start)
        start = now
        result = self.postprocess(response, headers, *extra)
        response = await result if post_async else result
        post_hist.observe(time.perf_counter() - start)
        return response, response_headers

    _call_steps: tuple[Any, ...] | None = None

    def _resolve_call_steps(self) -> tuple[Any, ...]:
        labels = get_labels(self.name)
        self._call_steps = (
            PRE_HIST_TIME.labels(**labels),
            PREDICT_HIST_TIME.labels(**labels),
            POST_HIST_TIME.labels(**labels),
            inspect.iscoroutinefunction(self.preprocess),
            inspect.iscoroutinefunction(self.predict),
            inspect.iscoroutinefunction(self.postprocess),
        )
        return self._call_steps

    # -- lifecycle and routes -------------------------------------------------------------------
    def load(self) -> bool:
        """Read the artifact (the server calls this before start()); ready once it is read."""
        self.ready = True
        return self.ready

    async def stop_async(self) -> None:
        """The asynchronous half of stop(): close channels and clients on the event loop. The
        server awaits it after stop()."""

    def failure(self) -> str | None:
        """Why this model can never serve again without a restart (its engine process died),
        else None. The server exits when a model reports one, so its supervisor (Kubernetes,
        `kubemind up`) restarts it: a process that is live but can never be ready hides the
        failure."""
        return None

    def collectors(self) -> Sequence[Collector]:
        """Prometheus collectors this model adds to its server's /metrics. The server registers
        them on its own registry (never the process-global one), once each."""
        return ()

    def routes(self) -> Sequence[Route]:
        """Routes beyond the v2 endpoints (OpenAI, v1, ...). The server mounts them on the one
        request pipeline; a model never mounts raw routes of its own."""
        return ()

    # -- passthrough ----------------------------------------------------------------------------
    @property
    def forwards_grpc(self) -> bool:
        """True when forward_grpc() serves v2 inference: the request's tensors are sent on as
        serialised bytes instead of being decoded into numpy and encoded again (a hop that does
        not transform them, like the Triton predictor in front of Triton). Binary REST requests
        take the same path, translated to a ModelInferRequest (kubemind.protocol.rest_forward)."""
        return False

    async def forward_grpc(self, message: pb.ModelInferRequest, version: str, headers: dict[str, str]) -> bytes:
        """Answer a validated ModelInferRequest with a serialised ModelInferResponse."""
        raise NotImplementedError(f"model {self.name!r} does not forward gRPC requests")

    # -- versions -----------------------------------------------------------------------------
    @property
    def default_version(self) -> str:
        """The version served when a request names none: the highest one."""
        return max(self.versions, key=lambda v: (v.isdigit(), int(v) if v.isdigit() else 0, v))

    def resolve_version(self, version: str | None) -> str:
        if not version:
            return self.default_version
        if version not in self.versions:
            raise ModelNotFound(
                f"{unknown_model_message(self.name, version)} (versions: {', '.join(self.versions)})"
            )
        return version

    # -- signature ----------------------------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        return [spec.as_metadata() for spec in self.inputs]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [spec.as_metadata() for spec in self.outputs]

    def metadata(self) -> dict[str, Any]:
        """The v2 model-metadata response object."""
        return {
            "name": self.name,
            "versions": list(self.versions),
            "platform": self.platform,
            "inputs": self.get_input_types(),
            "outputs": self.get_output_types(),
        }

    def triton_config(self) -> dict[str, Any]:
        """The model's configuration in Triton's ModelConfig JSON form.

        With batching, Triton's dims leave out the leading batch dimension, as Triton does.
        """

        def tensor(spec: TensorSpec) -> dict[str, Any]:
            dims = list(spec.shape[1:] if self.max_batch_size > 0 else spec.shape)
            return {"name": spec.name, "data_type": BY_NAME[spec.datatype].triton, "dims": dims}

        return {
            "name": self.name,
            "platform": self.platform,
            "backend": self.backend,
            "version_policy": {"specific": {"versions": [int(v) for v in self.versions if v.isdigit()]}},
            "max_batch_size": self.max_batch_size,
            "input": [tensor(spec) for spec in self.inputs],
            "output": [tensor(spec) for spec in self.outputs],
        }

    def validate_request(self, request: InferRequest) -> None:
        """Check the request's inputs against the declared signature; InvalidInput names the tensor."""
        self.validate_tensors(request.inputs, [o.name for o in request.request_outputs or ()])

    def validate_tensors(self, inputs: Iterable[Any], requested_outputs: Sequence[str]) -> None:
        """validate_request's checks on anything with name, datatype and shape: decoded inputs or
        a gRPC request's tensor headers (the passthrough path never decodes the data)."""
        if not self.inputs:
            return  # a model that declares no signature validates its own inputs
        seen = set()
        for tensor in inputs:
            spec = self._inputs_by_name.get(tensor.name)
            if spec is None:
                raise InvalidInput(
                    f"unknown input '{tensor.name}' for model '{self.name}' "
                    f"(expected: {', '.join(self._inputs_by_name)})"
                )
            if tensor.name in seen:
                raise InvalidInput(f"input '{tensor.name}' given more than once")
            seen.add(tensor.name)
            if tensor.datatype != spec.datatype:
                raise InvalidInput(
                    f"input '{tensor.name}': datatype {tensor.datatype} does not match the model's {spec.datatype}"
                )
            self._check_shape(spec, list(tensor.shape))
        missing = [name for name in self._inputs_by_name if name not in seen]
        if missing:
            raise InvalidInput(f"missing input(s) {', '.join(missing)} for model '{self.name}'")
        self._check_batch_agrees(inputs)
        if requested_outputs:
            known = {spec.name for spec in self.outputs}
            for requested in requested_outputs:
                if known and requested not in known:
                    raise InvalidInput(
                        f"unknown requested output '{requested}' for model '{self.name}'"
                    )

    def _check_shape(self, spec: TensorSpec, shape: list[int]) -> None:
        if len(shape) != len(spec.shape) or any(
            want != -1 and want != got for want, got in zip(spec.shape, shape, strict=True)
        ):
            raise InvalidInput(
                f"input '{spec.name}': shape {shape} does not match the model's {list(spec.shape)}"
            )
        if self.max_batch_size > 0 and shape and shape[0] == 0:
            raise InvalidInput(f"input '{spec.name}': batch size 0: a request carries at least one inference")
        if self.max_batch_size > 0 and shape and shape[0] > self.max_batch_size:
            raise InvalidInput(
                f"input '{spec.name}': batch size {shape[0]} exceeds the model's max_batch_size {self.max_batch_size}"
            )

    def _check_batch_agrees(self, inputs: Iterable[Any]) -> None:
        """With a batch dimension (max_batch_size > 0, Triton's convention) every input's leading
        dimension is the same batch: [3,16] with [2,16] is no request at all, and [1,16] with
        [2,16] must not be broadcast. Without one, shapes are the model's business."""
        tensors = list(inputs)
        if self.max_batch_size <= 0 or len(tensors) < 2:
            return
        first = tensors[0]
        for other in tensors[1:]:
            if first.shape and other.shape and first.shape[0] != other.shape[0]:
                raise InvalidInput(
                    f"inputs '{first.name}' and '{other.name}' have different batch sizes "
                    f"({first.shape[0]} and {other.shape[0]}): the leading dimension is the batch and must agree",
                    param=other.name,
                )

    def batch_size(self, request: InferRequest) -> int:
        """Inferences in one request: the leading dimension when the model batches, else 1."""
        if self.max_batch_size > 0 and request.inputs and request.inputs[0].shape:
            return int(request.inputs[0].shape[0])
        return 1


__all__ = ["KubemindModel", "ModelStatistics", "TensorSpec"]
