"""The typed seam between a kubemind model and the engine or server behind it (design
principle 3): each vendor SDK is imported in one module, which implements one of these.

`InferenceBackend` is a v2 server reached over the network (Triton, another kubemind
predictor: `kubemind.oip_client.OIPClient`); `GenerationBackend` is an in-process LLM engine
(vLLM's `AsyncLLM`: `kubemind_predictors.vllm.backend.VLLMEngine`), generic over the engine's
own sampling-parameters type so the seam carries no `Any`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

ParamsT = TypeVar("ParamsT", contravariant=True)


@dataclass(frozen=True)
class Tensor:
    """One named tensor crossing the seam: v2 datatype and its numpy array."""

    name: str
    datatype: str
    array: np.ndarray


class Backend(Protocol):
    """What the model's lifecycle calls: start() from start/start_engine, healthy() from every
    readiness check (ask the backend, never a flag), stop() from stop."""

    async def start(self) -> None: ...

    async def healthy(self) -> bool: ...

    async def stop(self) -> None: ...


class InferenceBackend(Backend, Protocol):
    async def infer(
        self,
        model: str,
        inputs: Sequence[Tensor],
        *,
        request_id: str = "",
        outputs: Sequence[str] = (),
        timeout: float | None = None,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> list[Tensor]: ...


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token_id: int
    token: str
    logprob: float


@dataclass(frozen=True, slots=True)
class PositionLogprobs:
    """Log-probabilities at one generated position: the sampled token and the top alternatives."""

    sampled: TokenLogprob
    top: tuple[TokenLogprob, ...]


@dataclass(frozen=True, slots=True)
class SequenceDelta:
    """What one of the request's `n` sequences produced since the previous step."""

    index: int
    text: str
    token_ids: Sequence[int]
    logprobs: tuple[PositionLogprobs, ...] | None
    finish_reason: str | None
    stop_reason: int | str | None


@dataclass(frozen=True, slots=True)
class GenerationStep:
    request_id: str
    prompt_token_count: int
    sequences: tuple[SequenceDelta, ...]
    finished: bool


class GenerationBackend(Backend, Protocol[ParamsT]):
    def generate(self, prompt_token_ids: list[int], sampling_params: ParamsT, request_id: str) -> AsyncIterator[GenerationStep]:
        """Stream the engine's steps; closing the iterator aborts the request in the engine."""
        ...


__all__ = [
    "Backend",
    "GenerationBackend",
    "GenerationStep",
    "InferenceBackend",
    "PositionLogprobs",
    "SequenceDelta",
    "Tensor",
    "TokenLogprob",
]
