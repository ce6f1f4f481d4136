"""KServe's OpenAI model layer, importable against vLLM 0.32 (see
`backend.make_kserve_openai_importable`). Import KServe's OpenAI names from here, never directly."""

from kubemind_predictors.vllm.backend import make_kserve_openai_importable

make_kserve_openai_importable()

from kserve.protocol.rest.openai import OpenAIGenerativeModel  # noqa: E402
from kserve.protocol.rest.openai.errors import create_error_response  # noqa: E402
from kserve.protocol.rest.openai.types import (  # noqa: E402
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionLogProb,
    ChatCompletionLogProbs,
    ChatCompletionLogProbsContent,
    ChatCompletionRequest,
    ChatMessage,
    ChoiceDelta,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionChunk,
    CompletionChunkChoice,
    CompletionLogProbs,
    CompletionRequest,
    ErrorResponse,
    UsageInfo,
)

__all__ = [
    "ChatCompletion",
    "ChatCompletionChoice",
    "ChatCompletionChunk",
    "ChatCompletionLogProb",
    "ChatCompletionLogProbs",
    "ChatCompletionLogProbsContent",
    "ChatCompletionRequest",
    "ChatMessage",
    "ChoiceDelta",
    "ChunkChoice",
    "Completion",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionChunkChoice",
    "CompletionLogProbs",
    "CompletionRequest",
    "ErrorResponse",
    "OpenAIGenerativeModel",
    "UsageInfo",
    "create_error_response",
]
