"""Trace-context propagation, Prometheus metrics and the one JSON log line per request.

Metrics live in a registry owned by each server (no module-level singletons); `/metrics` serves
it together with prometheus_client's default registry, where KServe keeps its own histograms.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from kubemind.queue_metrics import QueueMetrics
from kubemind.tracing import log_ids

ACCESS_LOGGER = "kubemind.access"
REQUEST_ID = "x-request-id"

# Latency buckets from 100 µs to 60 s: protocol overhead and LLM generations on one scale.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)


def propagated_headers(headers: Iterable[tuple[str, str]], allow: frozenset[str]) -> dict[str, str]:
    """The allow-listed trace-context headers of a request, lower-cased, with a request id.

    A request without `x-request-id` gets a fresh one, so every log line and downstream hop of
    it can be correlated.
    """
    picked = {key.lower(): value for key, value in headers if key.lower() in allow}
    if REQUEST_ID not in picked:
        picked[REQUEST_ID] = uuid.uuid4().hex
    return picked


class ServerMetrics:
    """The Prometheus metrics of one kubemind server."""

    def __init__(self, revision: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.revision = revision
        """The revision this server runs (Knative's K_REVISION): release gates compare the
        primary's and the candidate's requests and latency by it."""
        self.requests = Counter(
            "kubemind_requests",
            "Requests served, by model, endpoint, protocol, status code and revision.",
            ["model", "endpoint", "protocol", "code", "revision"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kubemind_request_duration_seconds",
            "Time from request received to reply encoded.",
            ["model", "endpoint", "protocol", "revision"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "kubemind_prediction_class",
            "Top-1 classes predicted, by model and revision: the model-quality gate compares a"
            " candidate's class histogram with its primary's (PSI).",
            ["model", "class", "revision"],
            registry=self.registry,
        )
        self.stage_latency = Histogram(
            "kubemind_stage_duration_seconds",
            "Time per request stage: queue (waiting for the model), decode, infer, encode.",
            ["model", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "kubemind_requests_in_flight",
            "Requests received and not yet answered.",
            ["model"],
            registry=self.registry,
        )
        self.queues = QueueMetrics(self.registry)

    def register_model_collectors(self, models: Iterable[object]) -> None:
        """Each collector a model declares, once (models of one server may share one)."""
        seen: set[int] = set()
        for model in models:
            for collector in getattr(model, "collectors", lambda: ())():
                if id(collector) not in seen:
                    seen.add(id(collector))
                    self.registry.register(collector)

    def exposition(self) -> bytes:
        # kubemind's own metrics live on self.registry; the global one holds what KServe and
        # vLLM register there themselves, which a scrape of this server should still see.
        return generate_latest(self.registry) + generate_latest(REGISTRY)


@dataclass
class RequestRecord:
    """What one request did; filled in as it goes and written as one JSON log line at the end."""

    protocol: str
    endpoint: str
    model: str = ""
    version: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    stages_ns: dict[str, int] = field(default_factory=dict)
    status: int = 200
    error: str = ""
    batch: int = 1
    predicted: list[str] = field(default_factory=list)
    """Top-1 class of each item a classifier answered (see `count_predictions`)."""
    executions: int = 1
    """Model executions this request accounts for: 0 for a request that rode in a batch another
    request's record already counts (dynamic batching), so execution_count stays Triton's."""
    span: Any = field(default=None, repr=False)
    """The request's OpenTelemetry server span (kubemind.tracing), None when tracing is off."""
    trace_token: Any = field(default=None, repr=False)

    def stage(self, name: str, since: float) -> float:
        """Record the stage that ran from `since` until now; return now for the next stage."""
        now = time.perf_counter()
        self.stages_ns[name] = int((now - since) * 1e9)
        return now

    def add_stage(self, name: str, ns: int) -> None:
        """Record a stage measured elsewhere (a model's queue time)."""
        self.stages_ns[name] = self.stages_ns.get(name, 0) + max(0, int(ns))

    @property
    def request_id(self) -> str:
        return self.headers.get(REQUEST_ID, "")


# The record of the request being served in this task: set by the service around the model call,
# so a model can add what only it measures (queue time in its batcher) without a new argument.
CURRENT_RECORD: ContextVar[RequestRecord | None] = ContextVar("kubemind_request_record", default=None)


def current_record() -> RequestRecord | None:
    """The RequestRecord of the request this task serves, or None outside a request."""
    return CURRENT_RECORD.get()


def count_predictions(classes: Iterable[str]) -> None:
    """A classifier reports the top-1 class of each item it answered, for the request metrics."""
    record = current_record()
    if record is not None:
        record.predicted.extend(classes)


def finish_request(metrics: ServerMetrics, record: RequestRecord, log_requests: bool) -> float:
    """Account for a finished request in metrics and the access log; returns its duration (s)."""
    duration = time.perf_counter() - record.started
    model = record.model or "-"
    metrics.requests.labels(model, record.endpoint, record.protocol, str(record.status), metrics.revision).inc()
    metrics.latency.labels(model, record.endpoint, record.protocol, metrics.revision).observe(duration)
    for stage, ns in record.stages_ns.items():
        metrics.stage_latency.labels(model, stage).observe(ns / 1e9)
    for predicted in record.predicted:
        metrics.predictions.labels(model, predicted, metrics.revision).inc()
    if log_requests:
        entry: dict[str, Any] = {
            "ts": time.time(),
            "request_id": record.request_id,
            "protocol": record.protocol,
            "endpoint": record.endpoint,
            "model": record.model,
            "version": record.version,
            "status": record.status,
            "duration_ms": round(duration * 1000, 3),
            "stages_ms": {k: round(v / 1e6, 3) for k, v in record.stages_ns.items()},
        }
        trace = {k: v for k, v in record.headers.items() if k != REQUEST_ID}
        if trace:
            entry["trace"] = trace
        entry.update(log_ids(record.span))
        if record.error:
            entry["error"] = record.error
        logging.getLogger(ACCESS_LOGGER).info(orjson.dumps(entry).decode())
    return duration


class _MessageOnly(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": record.created, "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        entry.update(log_ids())
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr: the access line as is, everything else wrapped in a JSON object.

    KServe's per-request trace lines and uvicorn's access log are silenced: kubemind writes one
    line per request instead of five.
    """
    access = logging.getLogger(ACCESS_LOGGER)
    access.handlers = [_handler(_MessageOnly())]
    access.propagate = False
    access.setLevel(logging.INFO)
    root = logging.getLogger()
    root.handlers = [_handler(_JsonFormatter())]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(noisy).disabled = True
    # httpx logs every request it sends at INFO: a router would write one line per step.
    for name in ("kserve", "uvicorn", "uvicorn.error", "httpx"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
        logger.setLevel(logging.WARNING)


def _handler(formatter: logging.Formatter) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    return handler
