"""`VLLMPredictor`: one model name answering OpenAI, v2 infer and the OIP generate extension.

It is a `KubemindModel` (v2: BYTES `text_input` -> `text_output`), a `TextGenerator` (the core
mounts the OIP generate extension for it) and declares the OpenAI routes (/openai/v1/completions
and /chat/completions; the core lists it on /openai/v1/models), so every protocol shares the one
engine, the one model name and the one request pipeline.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from kubemind.backend import GenerationStep
from kubemind.codecs import model_parameters
from kubemind.errors import OPENAI, BackendTimeout, InvalidInput
from kubemind.model import KubemindModel, TensorSpec
from kubemind.protocol.pipeline import EventStream, Route, RouteCall
from kubemind_predictors.vllm import openai_format
from kubemind_predictors.vllm.backend import VLLMEngine, parse_openai_request
from kubemind_predictors.vllm.kserve_openai import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
)
from kubemind_predictors.vllm.settings import VLLMSettings
from kubemind_registry.served import served_model_if_initialized

TEXT_INPUT = TensorSpec("text_input", "BYTES", (-1,))
TEXT_OUTPUT = TensorSpec("text_output", "BYTES", (-1,))


class VLLMPredictor(KubemindModel):
    """An LLM served by vLLM's AsyncLLM in this process."""

    platform = "vllm"
    backend = "vllm"

    def __init__(self, settings: VLLMSettings, engine: VLLMEngine | None = None):
        # A registered model's version is the registry's, so /versions/N is MLflow's version N.
        served = served_model_if_initialized(settings.model_dir)
        versions = (served.version,) if served is not None else ("1",)
        super().__init__(settings.model_name, versions=versions, inputs=[TEXT_INPUT], outputs=[TEXT_OUTPUT])
        self.settings = settings
        if settings.openai_model_name != settings.model_name:
            self.aliases = (settings.openai_model_name,)
        self.llm = engine or VLLMEngine(settings)
        # KServe servers start models with an `engine` in the background (start_engine) and
        # stop them with stop_engine; ready turns true only once the engine answers.
        self.engine = True
        self.ready = False

    # -- lifecycle ------------------------------------------------------------------------------
    def load(self) -> bool:
        """The weights are loaded by the engine (start_engine); ready only once it answers."""
        return self.ready

    def start(self) -> None:
        """Nothing to do synchronously: the engine starts in `start_engine`, off the event loop."""

    async def start_engine(self) -> None:
        await self.llm.start()
        self.ready = True

    def stop(self) -> None:
        self.ready = False
        self.llm.shutdown()

    def stop_engine(self) -> None:
        self.stop()

    async def healthy(self) -> bool:
        return await self.llm.healthy()

    def failure(self) -> str | None:
        return self.llm.failure()

    # -- shared request plumbing ------------------------------------------------------------------
    async def _encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        tokenizer = self.llm.tokenizer
        loop = asyncio.get_running_loop()
        # Tokenizing a long prompt takes milliseconds: not on the event loop.
        return await loop.run_in_executor(
            None, lambda: list(tokenizer.encode(text, add_special_tokens=add_special_tokens))
        )

    async def _chat_prompt(self, messages: list[Any]) -> list[int]:
        tokenizer = self.llm.tokenizer
        if not messages:
            raise InvalidInput("messages: must hold at least one message", param="messages")
        conversation = [_plain_message(message, index) for index, message in enumerate(messages)]
        loop = asyncio.get_running_loop()

        def render() -> str:
            return str(
                tokenizer.apply_chat_template(
                    conversation, tokenize=False, add_generation_prompt=True
                )
            )

        def render_and_encode() -> list[int]:
            # One executor hop for both: each hop is a thread hand-off on the time to first token.
            try:
                text = render()
            except Exception as exc:  # jinja errors: a message shape the template cannot render
                raise InvalidInput(f"messages: {exc}") from exc
            return list(tokenizer.encode(text, add_special_tokens=False))

        return await loop.run_in_executor(None, render_and_encode)

    # -- OpenAI ---------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [
            Route("POST", "/openai/v1/completions", "openai_completions", self._completions_route,
                  protocol=OPENAI, model_in_body=True),
            Route("POST", "/openai/v1/chat/completions", "openai_chat_completions", self._chat_route,
                  protocol=OPENAI, model_in_body=True),
        ]

    async def _completions_route(self, call: RouteCall) -> Completion | EventStream:
        result = await self.create_completion(parse_openai_request(CompletionRequest, call.body))
        return result if isinstance(result, Completion) else EventStream(result)

    async def _chat_route(self, call: RouteCall) -> ChatCompletion | EventStream:
        messages = call.body.get("messages") if isinstance(call.body, dict) else None
        if not isinstance(messages, list) or not messages:
            # vLLM's request class fails on a null with "'NoneType' object is not iterable".
            raise InvalidInput("messages: required, a non-empty list of messages", param="messages")
        result = await self.create_chat_completion(parse_openai_request(ChatCompletionRequest, call.body))
        return result if isinstance(result, ChatCompletion) else EventStream(result)

    async def create_completion(self, request: CompletionRequest) -> AsyncIterator[str] | Completion:
        """An OpenAI completion: the whole reply, or its SSE chunks when request.stream."""
        prompt = request.prompt
        if isinstance(prompt, list) and len(prompt) == 1 and not isinstance(prompt[0], int):
            prompt = prompt[0]
        if isinstance(prompt, str):
            token_ids = await self._encode(prompt, add_special_tokens=True)
        elif isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
            token_ids = list(prompt)
        else:
            raise InvalidInput("prompt: send one prompt (a string or token ids) per request", param="prompt")
        self._check_prompt_tokens(token_ids)
        params = self.llm.openai_sampling_params(request, len(token_ids))
        request_id = f"cmpl-{uuid.uuid4().hex}"
        steps = self.llm.generate(token_ids, params, request_id)
        want_logprobs = request.logprobs is not None
        model = self.settings.openai_model_name
        if request.stream:
            options = request.stream_options
            include_usage = bool(options and options.include_usage)
            return openai_format.completion_stream(
                steps, request_id, model, want_logprobs, include_usage
            )
        states, prompt_tokens = await self._collect(steps, params.n)
        return openai_format.completion(request_id, model, states, prompt_tokens, want_logprobs)

    def _check_prompt_tokens(self, token_ids: list[int], field: str = "prompt") -> None:
        if not token_ids:
            raise InvalidInput(f"{field}: must not be empty", param=field)
        vocabulary = len(self.llm.tokenizer)
        for token in token_ids:
            if not 0 <= token < vocabulary:
                raise InvalidInput(f"{field}: token id {token} is out of vocabulary (ids 0..{vocabulary - 1})", param=field)

    async def create_chat_completion(self, request: ChatCompletionRequest) -> AsyncIterator[str] | ChatCompletion:
        """An OpenAI chat completion: the whole reply, or its SSE chunks when request.stream."""
        _refuse_tools(request)
        token_ids = await self._chat_prompt(list(request.messages or ()))
        params = self.llm.openai_sampling_params(request, len(token_ids))
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        steps = self.llm.generate(token_ids, params, request_id)
        want_logprobs = bool(request.logprobs)
        model = self.settings.openai_model_name
        if request.stream:
            options = request.stream_options
            include_usage = bool(options and options.include_usage)
            return openai_format.chat_stream(
                steps, request_id, model, params.n, want_logprobs, include_usage
            )
        states, prompt_tokens = await self._collect(steps, params.n)
        return openai_format.chat_completion(
            request_id, model, states, prompt_tokens, want_logprobs
        )

    async def _collect(
        self, steps: AsyncIterator[GenerationStep], n: int
    ) -> tuple[list[openai_format.SequenceState], int]:
        try:
            return await asyncio.wait_for(
                openai_format.collect(steps, n), self.settings.request_timeout_seconds
            )
        except asyncio.TimeoutError as exc:
            # wait_for cancelled the generation, which aborted it in the engine
            raise BackendTimeout(
                f"generation took longer than {self.settings.request_timeout_seconds}s"
            ) from exc

    # -- v2 infer -------------------------------------------------------------------------------
    async def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        prompts = _text_inputs(payload)
        options = _plain_parameters(payload.parameters)
        texts = await asyncio.gather(*(self.generate_text(p, options) for p in prompts))
        return InferResponse(
            response_id=payload.id or uuid.uuid4().hex,
            model_name=self.name,
            model_version=payload.model_version,
            infer_outputs=[
                InferOutput(name=TEXT_OUTPUT.name, shape=[len(texts)], datatype="BYTES", data=texts)
            ],
        )

    async def generate_text(self, prompt: str, options: Mapping[str, Any]) -> str:
        """One whole completion of `prompt` (v2 infer and OIP /generate)."""
        token_ids = await self._encode(prompt, add_special_tokens=True)
        self._check_prompt_tokens(token_ids, "text_input")
        params = self.llm.sampling_params(options, len(token_ids), stream=False)
        steps = self.llm.generate(token_ids, params, f"gen-{uuid.uuid4().hex}")
        states, _ = await self._collect(steps, 1)
        return "".join(states[0].text)

    async def stream_text(
        self, prompt: str, options: Mapping[str, Any]
    ) -> AsyncIterator[tuple[str, str | None]]:
        """Text deltas and the finish reason (OIP /generate_stream). Validation happens before
        the first item, so a bad request fails before any SSE bytes are sent."""
        token_ids = await self._encode(prompt, add_special_tokens=True)
        self._check_prompt_tokens(token_ids, "text_input")
        params = self.llm.sampling_params(options, len(token_ids), stream=True)
        steps = self.llm.generate(token_ids, params, f"gen-{uuid.uuid4().hex}")

        async def deltas() -> AsyncIterator[tuple[str, str | None]]:
            async for step in steps:
                for delta in step.sequences:
                    yield delta.text, delta.finish_reason

        return deltas()


# What a text-only chat template can render; anything else is refused, never silently dropped.
CHAT_ROLES = ("system", "developer", "user", "assistant")
TEXT_PART_TYPES = ("text",)


def _plain_message(message: Any, index: int = 0) -> dict[str, Any]:
    """A chat message as the tokenizer's template wants it: text parts joined into a string."""
    where = f"messages[{index}]"
    if not isinstance(message, Mapping):
        raise InvalidInput(f"{where}: each message must be an object with role and content", param="messages")
    plain = dict(message)
    role = plain.get("role")
    if role not in CHAT_ROLES:
        raise InvalidInput(
            f"{where}.role: {role!r} is not supported (one of {', '.join(CHAT_ROLES)})", param="messages"
        )
    content = plain.get("content")
    if isinstance(content, list):
        texts = []
        for number, part in enumerate(content):
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind not in TEXT_PART_TYPES:
                raise InvalidInput(
                    f"{where}.content[{number}].type: {kind!r} is not supported: this model takes text only",
                    param="messages",
                )
            texts.append(str(part.get("text") or ""))
        plain["content"] = "".join(texts)
    elif content is not None and not isinstance(content, str):
        raise InvalidInput(f"{where}.content: must be a string or a list of text parts", param="messages")
    return plain


def _refuse_tools(request: Any) -> None:
    """Tool calling is not served: a request that needs it gets a 400, not a plain reply."""
    fields: set[str] = set(getattr(request, "model_fields_set", ()))
    if getattr(request, "tools", None):
        raise InvalidInput("tools: tool calling is not supported by this model", param="tools")
    choice = getattr(request, "tool_choice", None)
    if "tool_choice" in fields and choice not in (None, "none"):
        raise InvalidInput(f"tool_choice: {choice!r} is not supported (tool calling is not served)", param="tool_choice")


def _text_inputs(payload: InferRequest) -> list[str]:
    for tensor in payload.inputs:
        if tensor.name == TEXT_INPUT.name:
            values = tensor.as_numpy().ravel().tolist()
            return [v.decode() if isinstance(v, bytes) else str(v) for v in values]
    raise InvalidInput(f"missing input '{TEXT_INPUT.name}'")


def _plain_parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """v2 request parameters as Python values (gRPC gives InferParameter messages), without the
    protocol's own (binary_data_output from tritonclient.http is no sampling parameter)."""
    plain: dict[str, Any] = {}
    for key, value in model_parameters(parameters).items():
        which = getattr(value, "WhichOneof", None)
        plain[key] = getattr(value, which("parameter_choice")) if which else value
    return plain
