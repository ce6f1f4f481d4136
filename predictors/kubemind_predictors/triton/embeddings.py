"""OpenAI-compatible `/openai/v1/embeddings` for the Triton `minilm` model.

The v2 endpoint and the OpenAI endpoint are one model object: `TritonEmbeddingPredictor` serves
v2 inference (BYTES text [n] -> FP32 [n, 384]) and declares the OpenAI route, which the server
mounts on its one request pipeline. KServe 0.21's `OpenAIEncoderModel` would be the natural base,
but its module imports `vllm.entrypoints.openai.engine`, which vllm 0.32 no longer has; the
request and response shapes here are the OpenAI API's, so the stock `openai` client works unchanged.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from kubemind.errors import OPENAI, InvalidInput
from kubemind.oip_client import Tensor
from kubemind.protocol.pipeline import Route, RouteCall
from kubemind_predictors.triton.predictor import TritonPredictor

OPENAI_EMBEDDINGS_PATH = "/openai/v1/embeddings"


class EmbeddingRequest(BaseModel):
    """The OpenAI embeddings request (token-id inputs are not supported: the model tokenises)."""

    input: str | list[str]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, gt=0)
    user: str | None = None


class TritonEmbeddingPredictor(TritonPredictor):
    """The minilm predictor, plus the OpenAI embeddings route."""

    def routes(self) -> list[Route]:
        return [
            Route("POST", OPENAI_EMBEDDINGS_PATH, "openai_embeddings", self._embeddings_route,
                  protocol=OPENAI, model_in_body=True)
        ]

    async def _embeddings_route(self, call: RouteCall) -> dict[str, Any]:
        return await self.create_embedding(EmbeddingRequest.model_validate(call.body))

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """FP32 [n, 384] L2-normalised embeddings, and the texts' token count (the model's own
        tokenizer's, [CLS] and [SEP] included)."""
        array = np.array([t.encode("utf-8") for t in texts], dtype=np.object_).reshape(-1, 1)
        outputs = await self.client.infer(
            self.spec.name, [Tensor("text", "BYTES", array)], outputs=("embedding", "tokens")
        )
        by_name = {output.name: output.array for output in outputs}
        return by_name["embedding"], int(by_name["tokens"].sum())

    async def create_embedding(self, request: EmbeddingRequest) -> dict[str, Any]:
        texts = [request.input] if isinstance(request.input, str) else list(request.input)
        if not texts:
            raise InvalidInput("input: must hold at least one text", param="input")
        for index, text in enumerate(texts):
            if not text:
                raise InvalidInput(f"input[{index}]: is empty", param="input")
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800") JSON lets through
                    raise InvalidInput(
                        f"input[{index}]: is not valid Unicode text (lone surrogate at {exc.start})", param="input"
                    ) from None
        vectors, tokens = await self.embed(texts)
        if request.dimensions is not None:
            if request.dimensions > vectors.shape[1]:
                raise InvalidInput(f"dimensions: must be at most {vectors.shape[1]}", param="dimensions")
            vectors = vectors[:, : request.dimensions]
            vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": (
                    base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
                    if request.encoding_format == "base64"
                    else vector.astype(float).tolist()
                ),
            }
            for index, vector in enumerate(vectors)
        ]
        return {
            "id": f"embd-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "model": self.name,
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
