"""Retrieval for one question: embed -> hybrid search -> Feast features -> re-rank.

Each dependency call has its own deadline. Milvus failing or late is a 503 naming Milvus (no
answer is better than an ungrounded one); Feast failing or late leaves the answer without
features, said in the result, unless features are required (then 503 too).
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from dataclasses import dataclass, field
from typing import Any

from kubemind.errors import InvalidInput
from kubemind.telemetry import RequestRecord
from kubemind.tracing import SpanKind, client_span, span
from kubemind_transformers.rag.embedder import Embedder
from kubemind_transformers.rag.features import (
    DEFAULT_QUALITY,
    FeastUnavailable,
    FeatureLookup,
    OnlineFeatures,
)
from kubemind_transformers.rag.metrics import RagMetrics
from kubemind_transformers.rag.settings import RagSettings
from kubemind_transformers.rag.store import ChunkStore, Hit, MilvusUnavailable, filter_expression

QUALITY_SCALE = 0.1
"""A quality score's full range (0..1) moves a hit by this much of the best fused score."""
_WORD_PIECE = re.compile(r"\w+|[^\w\s]")


@dataclass
class Retrieval:
    hits: list[Hit]
    """The chunks for the prompt, best first (after re-ranking)."""
    features: FeatureLookup
    seconds: dict[str, float] = field(default_factory=dict)

    def features_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"available": self.features.available, "user_known": self.features.user_known,
                                "user": self.features.user}  # fmt: skip
        if not self.features.available:
            body["reason"] = self.features.reason
        return body


def rerank(hits: list[Hit], quality: dict[str, float], weight: float) -> list[Hit]:
    """Fused score (normalised to the best hit's) plus the document's quality, weighted; ties keep
    Milvus's order."""
    if not hits or weight == 0:
        return list(hits)
    best = max(hit.score for hit in hits) or 1.0
    scored = [
        (hit.score / best + weight * QUALITY_SCALE * (quality.get(hit.source, DEFAULT_QUALITY) - DEFAULT_QUALITY), -i, hit)
        for i, hit in enumerate(hits)
    ]
    scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [hit for _, _, hit in scored]


def question_tokens(text: str) -> int:
    """Word pieces, roughly as BERT's tokenizer splits (words and punctuation)."""
    return len(_WORD_PIECE.findall(text))


class Retriever:
    def __init__(self, settings: RagSettings, embedder: Embedder, store: ChunkStore, features: OnlineFeatures | None,
                 metrics: RagMetrics):  # fmt: skip
        self.settings = settings
        self.embedder = embedder
        self.store = store
        self.features = features
        self.metrics = metrics

    def check_question(self, question: Any, param: str) -> str:
        if not isinstance(question, str) or not question.strip():
            raise InvalidInput(f"{param}: the question is empty", param=param.split(".", 1)[0].split("[", 1)[0])
        tokens = question_tokens(question)
        if tokens > self.settings.max_question_tokens:
            raise InvalidInput(
                f"{param}: the question has {tokens} tokens, over the budget of {self.settings.max_question_tokens}",
                param=param.split(".", 1)[0].split("[", 1)[0],
            )
        return question.strip()

    def _observe(self, seconds: dict[str, float], stage: str, since: float, record: RequestRecord | None) -> float:
        now = time.perf_counter()
        seconds[stage] = now - since
        self.metrics.stage_seconds.labels(self.settings.model_name, stage).observe(now - since)
        if record is not None:
            record.add_stage(stage, int((now - since) * 1e9))
        return now

    async def retrieve(self, question: str, *, user: str | None = None, metadata_filter: dict[str, Any] | None = None,
                       top_k: int | None = None, record: RequestRecord | None = None) -> Retrieval:  # fmt: skip
        expression = filter_expression(metadata_filter)  # a bad filter is a 400 before any call
        with span("rag retrieve", attributes={"db.collection.name": self.store.collection, "rag.hybrid": self.settings.hybrid}):
            return await self._retrieve(question, user, expression, top_k, record)

    async def _retrieve(self, question: str, user: str | None, expression: str, top_k: int | None,
                        record: RequestRecord | None) -> Retrieval:  # fmt: skip
        """The stages, each in a span of its own (the Triton embedder's gRPC call is a client
        span under `rag embed`); the spans wrap the awaits, as the executor's threads do not
        carry the trace context."""
        seconds: dict[str, float] = {}
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        with span("rag embed", attributes={"rag.embedder": str(self.embedder.identity)}):
            vector = (await self.embedder.embed([question]))[0]
        now = self._observe(seconds, "embed", started, record)
        search = functools.partial(self.store.search, vector, question, self.settings.candidates,
                                   hybrid=self.settings.hybrid, expression=expression, rrf_k=self.settings.rrf_k)  # fmt: skip
        timeout = self.settings.milvus_timeout_seconds
        with client_span(f"milvus search {self.store.collection}", {"db.system.name": "milvus", "db.collection.name": self.store.collection}):
            try:
                hits = await asyncio.wait_for(loop.run_in_executor(None, search), timeout)
            except TimeoutError:
                raise MilvusUnavailable(f"Milvus ({self.store.uri}) did not answer the search within {timeout:g} s") from None
        now = self._observe(seconds, "search", now, record)
        lookup = await self._features(user, [hit.source for hit in hits])
        now = self._observe(seconds, "features", now, record)
        with span("rag rerank", SpanKind.INTERNAL, {"rag.candidates": len(hits)}):
            ranked = rerank(hits, lookup.quality, self.settings.quality_weight if lookup.available else 0.0)
        self._observe(seconds, "rerank", now, record)
        return Retrieval(ranked[: top_k or self.settings.top_k], lookup, seconds)

    async def _features(self, user: str | None, sources: list[str]) -> FeatureLookup:
        if self.features is None:
            return FeatureLookup(available=False, reason="no feature repository configured")
        timeout = self.settings.feature_timeout_seconds
        features = self.features
        try:
            with client_span("feast get_online_features", {"rag.documents": len(sources)}):
                lookup = await asyncio.wait_for(
                    asyncio.get_running_loop().run_in_executor(None, features.lookup, user, sources), timeout
                )
        except (FeastUnavailable, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, FeastUnavailable) else f"Feast did not answer within {timeout:g} s"
            if self.settings.features_required:
                raise FeastUnavailable(reason) from None
            self.metrics.features_unavailable.labels(self.settings.model_name).inc()
            return FeatureLookup(available=False, reason=reason)
        if user and not lookup.user_known:
            self.metrics.unknown_users.labels(self.settings.model_name).inc()
        return lookup


__all__ = ["Retrieval", "Retriever", "question_tokens", "rerank"]
