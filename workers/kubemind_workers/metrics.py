"""The CV worker's Prometheus metrics, on its own registry, served on `http_port` (/metrics) with
the v2 health paths a supervisor probes: /v2/health/live, and /v2/health/ready (200 once the
worker consumes from its broker). Dead letters are counted here and inspectable in Postgres
(state `failed`, the reason) and in the broker's `<topic>.dead`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app

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

        self.consuming = threading.Event()
        """Set while the worker is connected to its broker: what /v2/health/ready reports."""

    def serve(self, host: str, port: int) -> int:
        """Start the listener in a thread; returns the port it bound (0 picks a free one)."""
        self._server = make_server(host, port, self._app, handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="worker-metrics")
        self._thread.start()
        return int(self._server.server_port)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return make_wsgi_app(self.registry)(environ, start_response)
        if path == "/v2/health/live":
            return _json(start_response, "200 OK", b'{"live": true}')
        if path == "/v2/health/ready":
            ready = self.consuming.is_set()
            return _json(start_response, "200 OK" if ready else "503 Service Unavailable", b'{"ready": %s}' % (b"true" if ready else b"false"))
        return _json(start_response, "404 Not Found", b'{"error": "not found"}')

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _json(start_response: Callable[..., Any], status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every second: not worth a line each
        pass
