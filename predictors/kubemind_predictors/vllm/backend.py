"""The vLLM engine behind the predictor: the only module that imports vLLM.

`VLLMEngine` owns one `AsyncLLM` (continuous batching, paged KV cache; the engine core runs in a
child process). The model classes talk to it through plain dataclasses (`GenerationStep`,
`SequenceDelta`), so they never touch vLLM types and the engine can be swapped in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from kubemind.backend import (
    GenerationBackend,
    GenerationStep,
    PositionLogprobs,
    SequenceDelta,
    TokenLogprob,
)
from kubemind.errors import BackendUnavailable, InvalidInput, ModelNotReady
from kubemind.tracing import start_span
from kubemind_predictors.vllm.sampling import validate_sampling_fields, validate_single_sequence
from kubemind_predictors.vllm.settings import VLLMSettings

if TYPE_CHECKING:
    from vllm.sampling_params import SamplingParams

logger = logging.getLogger(__name__)


def make_kserve_openai_importable() -> None:
    """Let KServe 0.21's OpenAI layer import against vLLM 0.32.

    KServe's `kserve.protocol.rest.openai.types` re-exports vLLM's protocol classes from two
    modules vLLM 0.32 moved (`vllm.entrypoints.openai.engine.protocol` and
    `vllm.entrypoints.chat_utils`); without them KServe silently skips the /openai routes. The
    classes themselves are unchanged, so registering the old module names fixes the import.
    Idempotent, and a no-op once a KServe release follows the move.
    """
    import importlib
    import sys
    import types

    if "vllm.entrypoints.openai.engine.protocol" not in sys.modules:
        try:
            importlib.import_module("vllm.entrypoints.openai.engine.protocol")
        except ModuleNotFoundError:
            from vllm.entrypoints.generate.base import protocol as generate_protocol
            from vllm.entrypoints.serve.engine import protocol as serve_protocol

            legacy = types.ModuleType("vllm.entrypoints.openai.engine.protocol")
            legacy.__dict__.update(
                {k: v for k, v in vars(serve_protocol).items() if not k.startswith("__")}
            )
            legacy.DeltaMessage = generate_protocol.DeltaMessage  # type: ignore[attr-defined]
            sys.modules.setdefault(
                "vllm.entrypoints.openai.engine", types.ModuleType("vllm.entrypoints.openai.engine")
            )
            sys.modules[legacy.__name__] = legacy
    if "vllm.entrypoints.chat_utils" not in sys.modules:
        try:
            importlib.import_module("vllm.entrypoints.chat_utils")
        except ModuleNotFoundError:
            from vllm.renderers import chat_utils

            sys.modules["vllm.entrypoints.chat_utils"] = chat_utils


class VLLMEngine:
    """One vLLM `AsyncLLM` per process, started by `start()` and shut down by `stop()`."""

    def __init__(self, settings: VLLMSettings):
        self.settings = settings
        self._engine: Any = None
        self._tokenizer: Any = None
        self._max_model_len = 0
        self._generation_defaults: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop_requested = False

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the model and allocate the KV cache; the engine core process starts here."""
        if self._engine is not None:
            return
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        # The KV cache size is an engine argument on CPU (no process environment is changed; an
        # operator's VLLM_CPU_KVCACHE_SPACE still wins, as vLLM reads it last). On a GPU the
        # cache follows gpu_memory_utilization.
        kv_cache_bytes = self.settings.kv_cache_space * 1024**3 if current_platform.is_cpu() else None

        # None means "the model's own context length" (vLLM's annotation says int, but its
        # config resolution treats a missing value the same way).
        max_model_len: Any = self.settings.max_model_len
        args = AsyncEngineArgs(
            model=self.settings.model_dir,
            served_model_name=[self.settings.openai_model_name],
            tokenizer=self.settings.model_dir,
            dtype=self.settings.dtype,
            max_model_len=max_model_len,
            max_num_seqs=self.settings.max_num_seqs,
            gpu_memory_utilization=self.settings.gpu_memory_utilization,
            kv_cache_memory_bytes=kv_cache_bytes,
            enforce_eager=self.settings.enforce_eager,
            tensor_parallel_size=self.settings.tensor_parallel_size,
            seed=self.settings.seed,
            # The Prometheus stat logger publishes TTFT, inter-token latency, queue time, token
            # counts, running/waiting requests and KV-cache usage on the server's /metrics.
            disable_log_stats=False,
        )
        loop = asyncio.get_running_loop()
        # Building the engine loads weights and profiles memory for tens of seconds: keep the
        # event loop (health probes, other models) responsive meanwhile.
        self._stop_requested = False

        def build() -> Any:
            engine = AsyncLLM.from_engine_args(args)
            with self._lock:
                if self._stop_requested:
                    # stop() came while loading (SIGTERM during start-up): the start task was
                    # cancelled but this thread was not; don't leave its engine core behind.
                    engine.shutdown()
                    raise asyncio.CancelledError
                self._engine = engine
            return engine

        try:
            engine = await asyncio.wait_for(
                loop.run_in_executor(None, build), timeout=self.settings.engine_start_timeout_seconds
            )
        except TimeoutError:
            self._abandon_start()
            raise
        self._tokenizer = engine.get_tokenizer()
        self._max_model_len = int(engine.model_config.max_model_len)
        self._generation_defaults = dict(engine.model_config.get_diff_sampling_param())
        logger.info(
            "vLLM engine ready: %s (max_model_len %d)", self.settings.model_dir, self._max_model_len
        )

    def _abandon_start(self) -> None:
        """The build thread cannot be cancelled: it waits for the engine core it is starting,
        and the process could not exit before the whole engine had started (minutes on a busy
        CPU). Killing the core (this server's child processes are vLLM's) makes it fail now."""
        import psutil

        with self._lock:
            self._stop_requested = True
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()

    async def stop(self) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Shut the engine core down. Idempotent; SIGTERM alone would leave its workers spinning."""
        with self._lock:
            self._stop_requested = True
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()
            logger.info("vLLM engine stopped")

    def failure(self) -> str | None:
        """Why the engine can never serve again (its core process died), else None."""
        engine = self._engine
        if engine is not None and engine.errored:
            return "the vLLM engine core has died"
        return None

    @property
    def started(self) -> bool:
        return self._engine is not None

    async def healthy(self) -> bool:
        """Ask the engine core, not a flag: a dead core process makes this false."""
        if self._engine is None:
            return False
        try:
            await self._engine.check_health()
        except Exception:
            return False
        return not self._engine.errored

    # -- model facts ----------------------------------------------------------------------------
    def _require_engine(self) -> Any:
        if self._engine is None:
            raise ModelNotReady(f"model '{self.settings.model_name}' is not started")
        if self._engine.errored:
            raise BackendUnavailable("the vLLM engine has stopped")
        return self._engine

    @property
    def tokenizer(self) -> Any:
        self._require_engine()
        return self._tokenizer

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    def default_sampling(self) -> dict[str, Any]:
        """Server defaults over the model's generation_config: the middle of the precedence
        request > server default > generation_config."""
        defaults = dict(self._generation_defaults)
        overrides = {
            "temperature": self.settings.default_temperature,
            "top_p": self.settings.default_top_p,
            "top_k": self.settings.default_top_k,
        }
        defaults.update({k: v for k, v in overrides.items() if v is not None})
        return defaults

    # -- requests -------------------------------------------------------------------------------
    def openai_sampling_params(self, request: Any, prompt_token_count: int) -> Any:
        """vLLM SamplingParams for an OpenAI completion or chat request (KServe's request types
        are vLLM's protocol classes, whose `to_sampling_params` applies the precedence)."""
        validate_sampling_fields(request.model_dump(exclude_unset=True))
        requested = getattr(request, "max_completion_tokens", None) or request.max_tokens
        max_tokens = self._max_tokens(requested, prompt_token_count)
        try:
            params = request.to_sampling_params(max_tokens, self.default_sampling())
        except Exception as exc:
            raise engine_error(exc, before_first_output=True) from exc
        return params

    def sampling_params(
        self, options: Mapping[str, Any], prompt_token_count: int, *, stream: bool
    ) -> Any:
        """vLLM SamplingParams from plain options (v2 infer parameters, OIP generate)."""
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        validate_sampling_fields(options)
        validate_single_sequence(options)
        merged = {**self.default_sampling(), **{k: v for k, v in options.items() if v is not None}}
        merged["max_tokens"] = self._max_tokens(merged.pop("max_tokens", None), prompt_token_count)
        if isinstance(merged.get("stop"), str):
            merged["stop"] = [merged["stop"]]
        merged["output_kind"] = RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY
        try:
            return SamplingParams.from_optional(**merged)
        except Exception as exc:
            error = engine_error(exc, before_first_output=True)
            if isinstance(error, InvalidInput) and error.param is None:
                error = InvalidInput(f"invalid sampling parameters: {exc}")
            raise error from exc

    def _max_tokens(self, requested: int | None, prompt_token_count: int) -> int:
        room = self._max_model_len - prompt_token_count
        if room <= 0:
            raise InvalidInput(
                f"prompt: {prompt_token_count} tokens do not fit max_model_len {self._max_model_len}"
            )
        if requested is None:
            return min(self.settings.default_max_tokens, room)
        if requested > room:
            raise InvalidInput(
                f"max_tokens: {requested} + {prompt_token_count} prompt tokens exceed "
                f"max_model_len {self._max_model_len}"
            )
        return requested

    async def generate(
        self, prompt_token_ids: list[int], sampling_params: SamplingParams, request_id: str
    ) -> AsyncIterator[GenerationStep]:
        """Stream the engine's outputs. Closing or cancelling the iterator aborts the request in
        the engine (vLLM's generate() does so on GeneratorExit/CancelledError)."""
        from vllm.inputs import TokensPrompt

        engine = self._require_engine()
        outputs = engine.generate(
            TokensPrompt(prompt_token_ids=prompt_token_ids), sampling_params, request_id
        )
        started = False
        span = start_span("vllm generate", attributes={"gen_ai.request.id": request_id,
                                                        "gen_ai.usage.input_tokens": len(prompt_token_ids)})  # fmt: skip
        try:
            while True:
                try:
                    output = await anext(outputs)
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    if span is not None:
                        span.record_exception(exc)
                    raise engine_error(exc, before_first_output=not started) from exc
                started = True
                if span is not None and output.finished:
                    _engine_timings(span, output.metrics)
                yield GenerationStep(
                    request_id=request_id,
                    prompt_token_count=len(prompt_token_ids),
                    sequences=tuple(_sequence_delta(seq) for seq in output.outputs),
                    finished=bool(output.finished),
                )
        finally:
            if span is not None:
                span.end()
            with contextlib.suppress(Exception):
                await outputs.aclose()

    async def abort(self, request_id: str) -> None:
        if self._engine is not None:
            await self._engine.abort(request_id)


def parse_openai_request(request_type: type[Any], body: Any) -> Any:
    """An OpenAI request body as vLLM's protocol class; its validators raise vLLM's own
    errors (not pydantic's) for some fields, which become a 400 naming the field."""
    from pydantic import ValidationError

    try:
        return request_type.model_validate(body)
    except ValidationError:
        raise  # the pipeline names the field from pydantic's error
    except Exception as exc:
        raise engine_error(exc, before_first_output=True) from exc


if TYPE_CHECKING:  # mypy checks that the engine implements the core's generation seam
    _conforms: type[GenerationBackend[SamplingParams]] = VLLMEngine


def engine_error(exc: Exception, *, before_first_output: bool) -> Exception:
    """vLLM's exceptions as kubemind's error table: a request the engine rejects is a 400
    naming the parameter, a dead engine a 503; anything else stays as it is (a 500)."""
    from vllm.exceptions import VLLMClientError, VLLMServerError
    from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

    if isinstance(exc, VLLMClientError):
        parameter = getattr(exc, "parameter", None)
        return InvalidInput(f"{parameter}: {exc}" if parameter else str(exc), param=parameter)
    if isinstance(exc, EngineDeadError | VLLMServerError):
        return BackendUnavailable(f"the vLLM engine cannot serve requests: {exc}")
    if isinstance(exc, EngineGenerateError):
        return BackendUnavailable(f"the vLLM engine failed this request: {exc}")
    if before_first_output and isinstance(exc, ValueError | TypeError):
        # Raised while the engine checks the request (token ids out of vocabulary, a bad
        # logit_bias, a stop string it cannot use): the request is at fault.
        return InvalidInput(str(exc))
    return exc


def _engine_timings(span: Any, stats: Any) -> None:
    """The engine's own timestamps of a finished request as span events (queued, scheduled =
    prefill starts, first token = decode starts, last token) and durations. The engine core
    stamps them with the monotonic clock, which on Linux is the same in both processes."""
    if stats is None or not stats.queued_ts:
        return
    to_wall_ns = time.time() - time.monotonic()
    for name, stamp in (("queued", stats.queued_ts), ("prefill", stats.scheduled_ts),
                        ("decode", stats.first_token_ts), ("last_token", stats.last_token_ts)):  # fmt: skip
        if stamp:
            span.add_event(name, timestamp=int((stamp + to_wall_ns) * 1e9))
    span.set_attributes({
        "gen_ai.latency.time_in_queue": max(0.0, stats.scheduled_ts - stats.queued_ts),
        "gen_ai.latency.time_in_model_prefill": max(0.0, stats.first_token_ts - stats.scheduled_ts),
        "gen_ai.latency.time_in_model_decode": max(0.0, stats.last_token_ts - stats.first_token_ts),
        "gen_ai.usage.output_tokens": int(stats.num_generation_tokens),
    })


def _sequence_delta(sequence: Any) -> SequenceDelta:
    logprobs = None
    if sequence.logprobs is not None:
        logprobs = tuple(
            _position_logprobs(token_id, position)
            for token_id, position in zip(sequence.token_ids, sequence.logprobs, strict=False)
        )
    return SequenceDelta(
        index=sequence.index,
        text=sequence.text,
        token_ids=list(sequence.token_ids),
        logprobs=logprobs,
        finish_reason=sequence.finish_reason,
        stop_reason=sequence.stop_reason,
    )


def _position_logprobs(sampled_id: int, position: Mapping[int, Any]) -> PositionLogprobs:
    def entry(token_id: int) -> TokenLogprob:
        logprob = position[token_id]
        return TokenLogprob(token_id, logprob.decoded_token or "", float(logprob.logprob))

    ranked = sorted(position, key=lambda tid: position[tid].rank or 0)
    return PositionLogprobs(
        sampled=entry(sampled_id),
        top=tuple(entry(tid) for tid in ranked if position[tid].rank is not None),
    )
