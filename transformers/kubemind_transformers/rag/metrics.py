"""The RAG transformer's Prometheus metrics: time per stage, and answers given without features.
Collectors only: the server registers them on its own registry (never the process-global one)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from prometheus_client.registry import Collector

STAGES = ("embed", "search", "features", "rerank", "prompt", "llm_ttft", "llm")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RagMetrics:
    def __init__(self) -> None:
        self.stage_seconds = Histogram(
            "kubemind_rag_stage_seconds", "Time of one RAG stage per request (embed, search, features, "
            "rerank, prompt; llm_ttft: to the first token; llm: the whole answer).",
            ["model", "stage"], buckets=BUCKETS, registry=None,
        )  # fmt: skip
        self.features_unavailable = Counter(
            "kubemind_rag_features_unavailable", "Answers given without Feast features because the online store "
            "could not be read in time.", ["model"], registry=None,
        )  # fmt: skip
        self.unknown_users = Counter(
            "kubemind_rag_unknown_users", "Requests whose user Feast does not know (answered with default features).",
            ["model"], registry=None,
        )  # fmt: skip

    def collectors(self) -> tuple[Collector, ...]:
        return (self.stage_seconds, self.features_unavailable, self.unknown_users)


__all__ = ["STAGES", "RagMetrics"]
