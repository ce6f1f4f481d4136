"""Where a request waited before work on it started: head-of-line blocking made visible.

OS-level monitoring sees a busy process; it cannot see that requests queue behind one another.
Each hop has its own queue, and each is measured here or next to it:

- the event loop: `kubemind_event_loop_lag_seconds` — how late a timer fires, which is how long
  any ready callback (a request's next step) waits for the loop; CPU work on the loop shows here;
- the executor (tokenizing, decoding, CPU-bound model work): `kubemind_executor_queue_depth`
  (submitted, not started), `kubemind_executor_queue_wait_seconds`, `kubemind_executor_busy_threads`;
- a model's own batcher: `kubemind_stage_duration_seconds{stage="queue"}` (kubemind.telemetry);
- Triton: `kubemind_triton_queue_duration_seconds`, `kubemind_triton_pending_requests`
  (kubemind_predictors.triton.metrics);
- vLLM: its own `vllm:num_requests_waiting` and `vllm:request_queue_time_seconds`, served on the
  same /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Gauge, Histogram

# From 1 ms (a healthy loop's timer jitter) to 10 s (a loop blocked by a model's CPU work).
QUEUE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_INTERVAL_SECONDS = 0.1
"""How often the loop-lag probe arms its timer: at most 10 wake-ups a second, nothing measurable."""

T = TypeVar("T")


class QueueMetrics:
    """The queueing metrics of one server, on its registry."""

    def __init__(self, registry: CollectorRegistry):
        self.loop_lag = Histogram(
            "kubemind_event_loop_lag_seconds",
            "How late the event loop ran a timer: how long a ready request step waited for the loop.",
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        self.loop_lag_last = Gauge(
            "kubemind_event_loop_lag_last_seconds", "The event loop's lag at the last probe.", registry=registry
        )
        self.executor_wait = Histogram(
            "kubemind_executor_queue_wait_seconds",
            "Time work submitted to an executor waited for a free thread.",
            ["executor"],
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        self.executor_depth = Gauge(
            "kubemind_executor_queue_depth", "Work submitted to an executor and not started yet.", ["executor"], registry=registry
        )
        self.executor_busy = Gauge(
            "kubemind_executor_busy_threads", "Executor threads running work now.", ["executor"], registry=registry
        )
        self.executor_threads = Gauge(
            "kubemind_executor_threads", "Threads an executor may run (its max_workers).", ["executor"], registry=registry
        )


class InstrumentedExecutor(ThreadPoolExecutor):
    """A ThreadPoolExecutor that reports its queue: depth, wait before a thread takes the work,
    busy threads. The server installs it as the loop's default executor."""

    def __init__(self, metrics: QueueMetrics, name: str, max_workers: int, thread_name_prefix: str = ""):
        super().__init__(max_workers, thread_name_prefix=thread_name_prefix)
        self._wait = metrics.executor_wait.labels(name)
        self._depth = metrics.executor_depth.labels(name)
        self._busy = metrics.executor_busy.labels(name)
        metrics.executor_threads.labels(name).set(max_workers)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        queued = time.perf_counter()
        self._depth.inc()

        def run() -> T:
            self._depth.dec()
            self._wait.observe(time.perf_counter() - queued)
            self._busy.inc()
            try:
                return fn(*args, **kwargs)
            finally:
                self._busy.dec()

        try:
            return super().submit(run)
        except BaseException:
            self._depth.dec()  # refused (shut down): it never queued
            raise


class LoopLagMonitor:
    """A timer that measures how late it fires, every LAG_INTERVAL_SECONDS."""

    def __init__(self, metrics: QueueMetrics, interval: float = LAG_INTERVAL_SECONDS):
        self.metrics = metrics
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._probe())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            armed = loop.time()
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - armed - self.interval)
            self.metrics.loop_lag.observe(lag)
            self.metrics.loop_lag_last.set(lag)


__all__ = ["InstrumentedExecutor", "LoopLagMonitor", "QueueMetrics"]
