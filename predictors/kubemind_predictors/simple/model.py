"""The reference `simple` model: the conformance target for every kubemind server feature."""

from __future__ import annotations

import asyncio
import random

import numpy as np
from kserve.protocol.infer_type import InferRequest, InferResponse

from kubemind.codecs import NumpyOutput
from kubemind.errors import InternalError, InvalidInput
from kubemind.model import KubemindModel, TensorSpec

ELEMENTS = 16


class SimpleModel(KubemindModel):
    """INPUT0, INPUT1: INT32 [-1, 16] -> OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1."""

    def __init__(
        self, name: str = "simple", versions: tuple[str, ...] = ("1",), max_batch_size: int = 8, delay_seconds: float = 0.0,
        error_percent: float = 0.0,
    ):
        tensors = [TensorSpec(n, "INT32", (-1, ELEMENTS)) for n in ("INPUT0", "INPUT1")]
        outputs = [TensorSpec(n, "INT32", (-1, ELEMENTS)) for n in ("OUTPUT0", "OUTPUT1")]
        super().__init__(name, versions=versions, inputs=tensors, outputs=outputs, max_batch_size=max_batch_size)
        self.delay_seconds = delay_seconds
        self.error_percent = error_percent

    def load(self) -> bool:
        self.ready = True
        return self.ready

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.error_percent and random.uniform(0, 100) < self.error_percent:
            raise InternalError("simple: a failure injected by --error_percent")
        first = payload.get_input_by_name("INPUT0").as_numpy()
        second = payload.get_input_by_name("INPUT1").as_numpy()
        # INT32 arithmetic wraps on overflow, as Triton's simple model does.
        outputs = [NumpyOutput("OUTPUT0", first + second), NumpyOutput("OUTPUT1", first - second)]
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=outputs,
            model_version=payload.model_version,
        )


class SimpleStringModel(KubemindModel):
    """Triton's `simple_string`: INPUT0, INPUT1: BYTES [-1, 16] holding decimal integers ->
    OUTPUT0 = their sums, OUTPUT1 = their differences, as decimal strings (INT32 arithmetic)."""

    def __init__(self, name: str = "simple_string", versions: tuple[str, ...] = ("1",), max_batch_size: int = 8):
        tensors = [TensorSpec(n, "BYTES", (-1, ELEMENTS)) for n in ("INPUT0", "INPUT1")]
        outputs = [TensorSpec(n, "BYTES", (-1, ELEMENTS)) for n in ("OUTPUT0", "OUTPUT1")]
        super().__init__(name, versions=versions, inputs=tensors, outputs=outputs, max_batch_size=max_batch_size)

    @staticmethod
    def _integers(payload: InferRequest, name: str) -> np.ndarray:
        strings = payload.get_input_by_name(name).as_numpy()
        try:
            values = [int(item.decode() if isinstance(item, bytes) else item) for item in strings.flat]
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput(f"input '{name}': every element must be a decimal integer", param=name) from None
        return np.array(values, dtype=np.int64).astype(np.int32).reshape(strings.shape)

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        first, second = self._integers(payload, "INPUT0"), self._integers(payload, "INPUT1")

        def as_strings(values: np.ndarray) -> np.ndarray:
            return np.array([str(v).encode() for v in values.flat], dtype=np.object_).reshape(values.shape)

        outputs = [
            NumpyOutput("OUTPUT0", as_strings(first + second), "BYTES"),
            NumpyOutput("OUTPUT1", as_strings(first - second), "BYTES"),
        ]
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=outputs,
            model_version=payload.model_version,
        )


class SimpleIdentityModel(KubemindModel):
    """Triton's `simple_identity`: OUTPUT0 = INPUT0, BYTES [-1, -1] (any bytes, NULs included)."""

    def __init__(self, name: str = "simple_identity", max_batch_size: int = 8):
        super().__init__(
            name,
            inputs=[TensorSpec("INPUT0", "BYTES", (-1, -1))],
            outputs=[TensorSpec("OUTPUT0", "BYTES", (-1, -1))],
            max_batch_size=max_batch_size,
        )

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[NumpyOutput("OUTPUT0", payload.get_input_by_name("INPUT0").as_numpy(), "BYTES")],
            model_version=payload.model_version,
        )
