"""The reference `simple` model: the conformance target for every kubemind server feature."""

from __future__ import annotations

import asyncio

from kserve.protocol.infer_type import InferRequest, InferResponse

from kubemind.codecs import NumpyOutput
from kubemind.model import KubemindModel, TensorSpec

ELEMENTS = 16


class SimpleModel(KubemindModel):
    """INPUT0, INPUT1: INT32 [-1, 16] -> OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1."""

    def __init__(
        self, name: str = "simple", versions: tuple[str, ...] = ("1",), max_batch_size: int = 8, delay_seconds: float = 0.0
    ):
        tensors = [TensorSpec(n, "INT32", (-1, ELEMENTS)) for n in ("INPUT0", "INPUT1")]
        outputs = [TensorSpec(n, "INT32", (-1, ELEMENTS)) for n in ("OUTPUT0", "OUTPUT1")]
        super().__init__(name, versions=versions, inputs=tensors, outputs=outputs, max_batch_size=max_batch_size)
        self.delay_seconds = delay_seconds

    def load(self) -> bool:
        self.ready = True
        return self.ready

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
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
