"""Engine output -> OpenAI responses: whole completions, and SSE chunks for streams.

KServe's OpenAI types (vLLM's protocol classes) are used for every body, so the stock `openai`
client parses them unchanged.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from kubemind.backend import GenerationStep, PositionLogprobs, SequenceDelta
from kubemind.protocol.pipeline import SSE_DONE
from kubemind_predictors.vllm.kserve_openai import (
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionLogProb,
    ChatCompletionLogProbs,
    ChatCompletionLogProbsContent,
    ChatMessage,
    ChoiceDelta,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionChunk,
    CompletionChunkChoice,
    CompletionLogProbs,
    UsageInfo,
)


def sse(body: str) -> str:
    return f"data: {body}\n\n"


@dataclass
class SequenceState:
    """One of the `n` sequences, accumulated across steps for a non-streamed reply."""

    text: list[str] = field(default_factory=list)
    token_count: int = 0
    logprobs: list[PositionLogprobs] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: int | str | None = None

    def add(self, delta: SequenceDelta) -> None:
        self.text.append(delta.text)
        self.token_count += len(delta.token_ids)
        if delta.logprobs:
            self.logprobs.extend(delta.logprobs)
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason
            self.stop_reason = delta.stop_reason


async def collect(steps: AsyncIterator[GenerationStep], n: int) -> tuple[list[SequenceState], int]:
    """Drain a generation; returns each sequence's state and the prompt's token count."""
    states = [SequenceState() for _ in range(n)]
    prompt_tokens = 0
    async for step in steps:
        prompt_tokens = step.prompt_token_count
        for delta in step.sequences:
            states[delta.index].add(delta)
    return states, prompt_tokens


def usage(prompt_tokens: int, completion_tokens: int) -> UsageInfo:
    return UsageInfo(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


# -- completions -----------------------------------------------------------------------------------
def completion_logprobs(
    positions: Iterable[PositionLogprobs], offset: int = 0
) -> CompletionLogProbs:
    tokens, token_logprobs, top, offsets = [], [], [], []
    for position in positions:
        offsets.append(offset)
        offset += len(position.sampled.token)
        tokens.append(position.sampled.token)
        token_logprobs.append(position.sampled.logprob)
        top.append({entry.token: entry.logprob for entry in position.top})
    return CompletionLogProbs(
        text_offset=offsets, token_logprobs=token_logprobs, tokens=tokens, top_logprobs=top
    )


def completion(
    request_id: str,
    model: str,
    states: list[SequenceState],
    prompt_tokens: int,
    want_logprobs: bool,
) -> Completion:
    choices = [
        CompletionChoice(
            index=index,
            text="".join(state.text),
            logprobs=completion_logprobs(state.logprobs) if want_logprobs else None,
            finish_reason=state.finish_reason,
            stop_reason=state.stop_reason,
        )
        for index, state in enumerate(states)
    ]
    completion_tokens = sum(state.token_count for state in states)
    return Completion(
        id=request_id,
        created=int(time.time()),
        model=model,
        choices=choices,
        usage=usage(prompt_tokens, completion_tokens),
    )


async def completion_stream(
    steps: AsyncIterator[GenerationStep],
    request_id: str,
    model: str,
    want_logprobs: bool,
    include_usage: bool,
) -> AsyncIterator[str]:
    created = int(time.time())
    prompt_tokens = completion_tokens = 0
    offsets: dict[int, int] = {}
    async for step in steps:
        prompt_tokens = step.prompt_token_count
        choices = []
        for delta in step.sequences:
            completion_tokens += len(delta.token_ids)
            logprobs = None
            if want_logprobs and delta.logprobs:
                logprobs = completion_logprobs(delta.logprobs, offsets.get(delta.index, 0))
            offsets[delta.index] = offsets.get(delta.index, 0) + len(delta.text)
            choices.append(
                CompletionChunkChoice(
                    index=delta.index,
                    text=delta.text,
                    logprobs=logprobs,
                    finish_reason=delta.finish_reason,
                    stop_reason=delta.stop_reason,
                )
            )
        chunk = CompletionChunk(id=request_id, created=created, model=model, choices=choices)
        yield sse(chunk.model_dump_json(exclude_none=True))
    if include_usage:
        final = CompletionChunk(
            id=request_id,
            created=created,
            model=model,
            choices=[],
            usage=usage(prompt_tokens, completion_tokens),
        )
        yield sse(final.model_dump_json(exclude_none=True))
    yield SSE_DONE


# -- chat ------------------------------------------------------------------------------------------
def chat_logprobs(positions: Iterable[PositionLogprobs]) -> ChatCompletionLogProbs:
    def as_bytes(token: str) -> list[int]:
        return list(token.encode("utf-8", errors="replace"))

    return ChatCompletionLogProbs(
        content=[
            ChatCompletionLogProbsContent(
                token=position.sampled.token,
                logprob=position.sampled.logprob,
                bytes=as_bytes(position.sampled.token),
                top_logprobs=[
                    ChatCompletionLogProb(token=e.token, logprob=e.logprob, bytes=as_bytes(e.token))
                    for e in position.top
                ],
            )
            for position in positions
        ]
    )


def chat_completion(
    request_id: str,
    model: str,
    states: list[SequenceState],
    prompt_tokens: int,
    want_logprobs: bool,
) -> ChatCompletion:
    choices = [
        ChatCompletionChoice(
            index=index,
            message=ChatMessage(role="assistant", content="".join(state.text)),
            logprobs=chat_logprobs(state.logprobs) if want_logprobs else None,
            finish_reason=state.finish_reason,
            stop_reason=state.stop_reason,
        )
        for index, state in enumerate(states)
    ]
    completion_tokens = sum(state.token_count for state in states)
    return ChatCompletion(
        id=request_id,
        created=int(time.time()),
        model=model,
        choices=choices,
        usage=usage(prompt_tokens, completion_tokens),
    )


async def chat_stream(
    steps: AsyncIterator[GenerationStep],
    request_id: str,
    model: str,
    n: int,
    want_logprobs: bool,
    include_usage: bool,
) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(choices: list[ChunkChoice]) -> str:
        body = ChatCompletionChunk(id=request_id, created=created, model=model, choices=choices)
        return sse(body.model_dump_json(exclude_none=True))

    # OpenAI opens every choice with a role-only delta.
    yield chunk(
        [ChunkChoice(index=i, delta=ChoiceDelta(role="assistant", content="")) for i in range(n)]
    )
    prompt_tokens = completion_tokens = 0
    async for step in steps:
        prompt_tokens = step.prompt_token_count
        choices = []
        for delta in step.sequences:
            completion_tokens += len(delta.token_ids)
            choices.append(
                ChunkChoice(
                    index=delta.index,
                    delta=ChoiceDelta(content=delta.text),
                    logprobs=chat_logprobs(delta.logprobs)
                    if want_logprobs and delta.logprobs
                    else None,
                    finish_reason=delta.finish_reason,
                    stop_reason=delta.stop_reason,
                )
            )
        yield chunk(choices)
    if include_usage:
        final = ChatCompletionChunk(
            id=request_id,
            created=created,
            model=model,
            choices=[],
            usage=usage(prompt_tokens, completion_tokens),
        )
        yield sse(final.model_dump_json(exclude_none=True))
    yield SSE_DONE
