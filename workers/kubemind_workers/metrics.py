"""The CV worker's Prometheus metrics, on its own registry, served on `http_port` (/metrics)
with a liveness answer on every other path. Dead letters are counted here and inspectable in
Postgres (state `failed`, the reason) and in the broker's `<topic>.dead`."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.outcomes = Counter(
            "kubemind_jobs_outcomes",
            "Attempts by how they ended: stored, stale (a newer attempt held the token), dead_lettered.",
            ["model", "outcome"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "kubemind_jobs_batch_size", "Jobs per inference call.", ["model"], buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.inference_seconds = Histogram(
            "kubemind_jobs_inference_duration_seconds",
            "One micro-batch's inference call.",
            ["model"],
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.webhooks = Counter(
            "kubemind_webhook_attempts",
            "Webhook attempts by result: delivered, retry, failed.",
            ["result"],
            registry=self.registry,
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics listener; returns the port it bound (0 picks a free one)."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
