"""Triton's queue time and pending-request count, re-exported as kubemind Prometheus metrics.

Queueing inside Triton is where head-of-line blocking hides: the predictor's own latency shows
that requests are slow, these show that they wait for a model instance. Triton publishes both on
its metrics port; a poller reads them every `interval` seconds and this Collector (registered by
the server on its own registry) serves the last reading, so a scrape never waits on Triton.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

logger = logging.getLogger("kubemind.triton.metrics")

QUEUE_METRIC = "nv_inference_queue_duration_us"
PENDING_METRIC = "nv_inference_pending_request_count"
REQUESTS_METRIC = "nv_inference_request_success"


class TritonQueueMetrics:
    """Polls Triton's /metrics and exposes per-model queue time and pending requests."""

    def __init__(self, metrics_url: str, interval: float = 1.0):
        self.metrics_url = metrics_url
        self.interval = interval
        self.queue_us: dict[str, float] = {}
        self.pending: dict[str, float] = {}
        self.successes: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll_forever())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _poll_forever(self) -> None:
        async with httpx.AsyncClient(timeout=self.interval) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    self.update((await client.get(self.metrics_url)).text)
                await asyncio.sleep(self.interval)

    def update(self, exposition: str) -> None:
        """Take one reading from Triton's Prometheus text."""
        wanted = {QUEUE_METRIC: self.queue_us, PENDING_METRIC: self.pending, REQUESTS_METRIC: self.successes}
        for family in text_string_to_metric_families(exposition):
            for sample in family.samples:
                target = wanted.get(sample.name) if sample.name in wanted else wanted.get(family.name)
                if target is not None and "model" in sample.labels:
                    target[sample.labels["model"]] = sample.value

    def collect(self) -> Iterator[Metric]:
        queue = CounterMetricFamily(
            "kubemind_triton_queue_duration_seconds",
            "Time requests spent queued inside Triton before a model instance took them.",
            labels=["model"],
        )
        for model, micros in self.queue_us.items():
            queue.add_metric([model], micros / 1e6)
        pending = GaugeMetricFamily(
            "kubemind_triton_pending_requests",
            "Requests queued inside Triton, waiting for a model instance.",
            labels=["model"],
        )
        for model, count in self.pending.items():
            pending.add_metric([model], count)
        successes = CounterMetricFamily(
            "kubemind_triton_requests_succeeded",
            "Requests Triton completed successfully (pairs with the queue time for a mean).",
            labels=["model"],
        )
        for model, count in self.successes.items():
            successes.add_metric([model], count)
        yield from (queue, pending, successes)
