"""The webhook sender: delivers every finished job (succeeded or failed) to its callback URL.

Driven from Postgres, not from memory: storing a result makes its delivery due in the same
statement, and any worker's sender leases due deliveries, so a worker killed after storing
loses no webhook. Every attempt is recorded. Retries back off exponentially with full jitter up
to a limit, then the delivery is marked failed and the job shows why. `webhook-id` is the job id:
a receiver that sees a delivery twice (a sender died after the POST, before recording it) sees
the same id and can drop the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

import httpx
import orjson

from kubemind.errors import InvalidInput
from kubemind.tracing import SpanKind, inject, remote_parent, span
from kubemind_workers.callback_urls import CallbackPolicy
from kubemind_workers.metrics import WorkerMetrics
from kubemind_workers.settings import CVWorkerSettings
from kubemind_workers.signing import signed_headers
from kubemind_workers.status_cache import StatusCache
from kubemind_workers.store import DueDelivery, Job, JobStore

logger = logging.getLogger("kubemind.workers.webhooks")

LEASE_MARGIN_SECONDS = 5.0
MAX_IN_FLIGHT = 32


def webhook_body(job: Job) -> bytes:
    data: dict[str, object] = {"job_id": job.id, "model": job.model, "model_version": job.model_version, "state": job.state}
    if job.result is not None:
        data["result"] = job.result
    if job.error:
        data["error"] = job.error
    return orjson.dumps({"type": f"job.{job.state}", "timestamp": int(time.time()), "data": data})


def retry_delay(attempt: int, first: float, cap: float) -> float:
    """Full jitter: uniform in [0, min(cap, first * 2^(attempt-1))]."""
    return random.uniform(0, min(cap, first * 2 ** (attempt - 1)))


class WebhookSender:
    def __init__(
        self, settings: CVWorkerSettings, store: JobStore, cache: StatusCache, policy: CallbackPolicy, metrics: WorkerMetrics
    ):
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.cache = cache
        self.policy = policy
        self.wake = asyncio.Event()
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # follow_redirects off: a redirect could lead past the callback URL check.
        self._client = httpx.AsyncClient(timeout=self.settings.webhook_timeout_seconds, follow_redirects=False)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        """Lease what is due, as far as free slots allow, each delivery its own task: a slow
        receiver holds one slot, never the deliveries of other jobs."""
        lease = self.settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                free = MAX_IN_FLIGHT - len(in_flight)
                due = []
                if free > 0:
                    try:
                        due = await self.store.lease_deliveries(free, lease)
                    except Exception as exc:  # Postgres away: try again on the next tick
                        logger.warning("webhook sender: %s: %s", type(exc).__name__, exc)
                for item in due:
                    task = asyncio.create_task(self._deliver_logged(item))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if due and len(due) == free:
                    await asyncio.sleep(0)  # more may be due: lease again once a slot frees
                    if len(in_flight) >= MAX_IN_FLIGHT:
                        await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.settings.webhook_poll_seconds)
        finally:
            for task in in_flight:
                task.cancel()

    async def _deliver_logged(self, due: DueDelivery) -> None:
        try:
            await self.deliver(due)
        except Exception as exc:  # its lease runs out and another try comes
            logger.warning("webhook for job %s: %s: %s", due.job.id, type(exc).__name__, exc)

    async def deliver(self, due: DueDelivery) -> None:
        """One attempt, in a span continuing the submitting request's trace."""
        attributes = {"http.request.method": "POST", "kubemind.job_id": due.job.id, "kubemind.webhook_attempt": due.attempt}
        with span("webhook POST", SpanKind.CLIENT, attributes, remote_parent(due.job.trace_context)):
            await self._deliver(due)

    async def _deliver(self, due: DueDelivery) -> None:
        job, attempt = due.job, due.attempt
        assert self._client is not None
        body = webhook_body(job)
        status_code: int | None = None
        error: str | None = None
        try:
            await self.policy.check(job.callback_url)
            headers = {"content-type": "application/json", **signed_headers(self.settings.webhook_secret, job.id, body), **inject()}
            response = await self._client.post(job.callback_url, content=body, headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"the receiver answered {status_code}"
        except InvalidInput as exc:
            error = exc.message
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivered = error is None
        retry_in = None
        if not delivered and attempt < self.settings.webhook_max_attempts:
            retry_in = retry_delay(attempt, self.settings.webhook_backoff_seconds, self.settings.webhook_max_backoff_seconds)
        now = await self.store.record_delivery(
            job.id, attempt, job.id, status_code, error, delivered=delivered, retry_in=retry_in
        )
        self.metrics.webhooks.labels("delivered" if delivered else ("retry" if retry_in is not None else "failed")).inc()
        await self.cache.put(now)
        if not delivered:
            logger.info("webhook for job %s, attempt %d: %s%s", job.id, attempt, error,
                        f"; retry in {retry_in:.2f}s" if retry_in is not None else "; giving up")  # fmt: skip
