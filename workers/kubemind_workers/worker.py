"""The CV worker: python -m kubemind_workers.worker --predictor_host 127.0.0.1:8081 --broker kafka ...

Per micro-batch, in this order (principle 14; each step is safe to repeat):
1. claim every job in Postgres (raises its fencing token; a job already finished is just acked);
2. infer, one grpc-v2 call per group of compatible jobs, with a deadline and bounded retries;
3. store each result — only if this attempt still holds the token — and cache the status in Redis
   (claimed jobs are cached `running` after step 1; the cache only ever takes a newer version);
4. acknowledge the messages (RabbitMQ ack / Kafka commit);
5. wake the webhook sender (the delivery itself was made due by step 3, in Postgres).
A job that keeps failing is dead-lettered with state `failed` and the reason; so is one claimed
more than `max_deliveries` times (a message that kills every worker that takes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

from kubemind.errors import KubemindError
from kubemind.oip_client import OIPClient, RetryPolicy
from kubemind.settings import parse_settings
from kubemind.telemetry import configure_logging
from kubemind.tracing import (
    SpanKind,
    configure_tracing,
    link_to,
    remote_parent,
    shutdown_tracing,
    span,
)
from kubemind_workers.batching import PreparedJob, group, prepare, split_outputs, stack_inputs
from kubemind_workers.brokers import Broker, Message, open_broker
from kubemind_workers.callback_urls import CallbackPolicy
from kubemind_workers.kill_points import KillPoints
from kubemind_workers.metrics import WorkerMetrics
from kubemind_workers.settings import CVWorkerSettings
from kubemind_workers.status_cache import StatusCache
from kubemind_workers.store import Claim, JobStore
from kubemind_workers.webhooks import WebhookSender

logger = logging.getLogger("kubemind.workers.worker")

RECONNECT_SECONDS = 0.5


class CVWorker:
    def __init__(self, settings: CVWorkerSettings):
        self.settings = settings
        self.name = settings.worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.store = JobStore(settings.database_url)
        self.cache = StatusCache(settings.redis_url, settings.redis_prefix, settings.status_ttl_seconds)
        self.broker: Broker = open_broker(settings, consumer=True, prefetch=settings.batch_size * 2)
        self.client = OIPClient(
            settings.predictor_host,
            RetryPolicy(timeout=settings.inference_timeout_seconds, retry_budget=2, backoff=0.05, cooldown=0.2),
        )
        self.metrics = WorkerMetrics()
        self.sender = WebhookSender(
            settings, self.store, self.cache, CallbackPolicy(settings.callback_allow_list), self.metrics
        )
        self.kill_points = KillPoints(settings)
        self._batchable: dict[str, bool] = {}
        self.stopping = asyncio.Event()

    async def start(self) -> None:
        port = self.metrics.serve(self.settings.host, self.settings.http_port)
        logger.info("worker %s: metrics on http://%s:%d/metrics", self.name, self.settings.host, port)
        await self.store.open()
        await self.cache.open()
        self.client.connect()
        await self.sender.start()

    async def stop(self) -> None:
        await self.sender.stop()
        await self.broker.stop()
        await self.client.close()
        await self.cache.close()
        await self.store.close()
        self.metrics.close()

    async def run(self) -> None:
        """Consume until stopped; reconnects to the broker whenever it goes away."""
        connected = False
        while not self.stopping.is_set():
            try:
                if not connected:
                    await self.broker.start()
                    connected = True
                    self.metrics.consuming.set()
                    logger.info("worker %s consuming %s from %s", self.name, self.settings.topic, self.settings.broker)
                batch = await self.broker.next_batch(self.settings.batch_size, self.settings.batch_wait_seconds)
                if batch:
                    await self.process(batch)
            except Exception as exc:
                logger.warning("broker: %s: %s; reconnecting", type(exc).__name__, exc)
                self.metrics.consuming.clear()
                await self.broker.stop()
                connected = False
                await asyncio.sleep(RECONNECT_SECONDS)

    # -- one micro-batch --------------------------------------------------------------------------
    async def process(self, batch: Sequence[Message]) -> None:
        """One micro-batch, in one consumer span: the child of its first message's producer and
        linked to the others' (a span has one parent; a batch serves many traces)."""
        parents = [remote_parent(message.trace_context) for message in batch]
        attributes = {"messaging.destination.name": self.settings.topic, "messaging.batch.message_count": len(batch),
                      "kubemind.job_id": batch[0].job_id}  # fmt: skip
        links = [link for parent in parents[1:] for link in link_to(parent)]
        with span(f"process {self.settings.topic}", SpanKind.CONSUMER, attributes, parents[0], links):
            await self._process(batch)

    async def _process(self, batch: Sequence[Message]) -> None:
        settled: list[Message] = []  # dead-lettered: never acked again
        claims = await self.store.claim_many([message.job_id for message in batch], self.name)
        # GET /v2/jobs/{id} shows `running` while the batch runs (the cache keeps the newest version)
        await self.cache.put_many([claim.job for claim in claims.values()])
        jobs: list[tuple[Message, PreparedJob]] = []
        for message in batch:
            # pop: a job whose message came twice in one batch runs once; the copy is just acked
            claim = claims.pop(message.job_id, None)
            if claim is None:
                continue  # finished already (a redelivery after its result was stored): ack it
            if claim.token > self.settings.max_deliveries:
                await self._dead_letter(message, claim, f"claimed {claim.token - 1} times without finishing (poison message)")
                settled.append(message)
                continue
            try:
                jobs.append((message, prepare(claim)))
            except KubemindError as exc:
                await self._dead_letter(message, claim, f"undecodable request: {exc.message}")
                settled.append(message)
        by_job = {id(job): message for message, job in jobs}
        results: list[tuple[Claim, dict[str, object]]] = []
        for run in group([job for _, job in jobs], await self._batches(jobs), self.settings.batch_size):
            for job, outcome in zip(run, await self._infer(run), strict=True):
                if isinstance(outcome, str):
                    await self._dead_letter(by_job[id(job)], job.claim, outcome)
                    settled.append(by_job[id(job)])
                else:
                    results.append((job.claim, outcome))
        if results:
            self.kill_points.reached("after_infer", len(results))
            await self.kill_points.stall(
                len(results), self.broker.drop_connection, lambda: self.store.superseded([claim for claim, _ in results])
            )
            stored = await self.store.store_results(results)
            for claim, _ in results:
                job_stored = stored.get(claim.job_id)
                self.metrics.outcomes.labels(claim.model, "stored" if job_stored else "stale").inc()
                if job_stored is None:
                    logger.info("job %s: attempt %d is stale, result discarded", claim.job_id, claim.token)
            await self.cache.put_many(list(stored.values()))
            self.kill_points.reached("after_store", len(results))
            if stored:
                self.sender.wake.set()
        await self.broker.ack([message for message in batch if message not in settled])

    async def _batches(self, jobs: Sequence[tuple[Message, PreparedJob]]) -> bool:
        """Whether the model takes a batch dimension (its metadata's first dimensions are -1)."""
        if not jobs:
            return False
        model = jobs[0][1].claim.model
        if model not in self._batchable:
            try:
                metadata = await self.client.model_metadata(model)
                self._batchable[model] = bool(metadata.inputs) and all(
                    len(t.shape) > 0 and t.shape[0] == -1 for t in metadata.inputs
                )
            except KubemindError:
                return False
        return self._batchable[model]

    async def _infer(self, run: Sequence[PreparedJob]) -> list[dict[str, object] | str]:
        """One call for the run; if it fails, each job alone with retries. A str is a failure reason."""
        if len(run) > 1:
            try:
                return list(await self._call(run))
            except KubemindError as exc:
                logger.info("batch of %d failed (%s); trying its jobs one by one", len(run), exc.message)
        outcomes: list[dict[str, object] | str] = []
        for job in run:
            outcomes.append(await self._infer_alone(job))
        return outcomes

    async def _infer_alone(self, job: PreparedJob) -> dict[str, object] | str:
        delay = self.settings.retry_backoff_seconds
        error = ""
        for attempt in range(1, self.settings.max_attempts + 1):
            try:
                return (await self._call([job]))[0]
            except KubemindError as exc:
                error = f"{type(exc).__name__}: {exc.message}"
                await self.store.record_error(job.claim, error)
                logger.info("job %s try %d/%d failed: %s", job.claim.job_id, attempt, self.settings.max_attempts, error)
            if attempt < self.settings.max_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        return f"inference failed {self.settings.max_attempts} times; last: {error}"

    async def _call(self, run: Sequence[PreparedJob]) -> list[dict[str, object]]:
        first = run[0]
        model = first.claim.model
        self.metrics.batch_size.labels(model).observe(len(run))
        with self.metrics.inference_seconds.labels(model).time():
            outputs = await self.client.infer(
                model,
                stack_inputs(run),
                request_id=first.claim.job_id,
                outputs=first.outputs,
                timeout=self.settings.inference_timeout_seconds,
            )
        return list(split_outputs(run, outputs))

    async def _dead_letter(self, message: Message, claim: Claim, reason: str) -> None:
        if await self.store.fail_job(claim.job_id, claim.token, reason):
            await self._cache_status(claim)
            self.sender.wake.set()
        await self.broker.dead_letter(message, reason)
        self.metrics.outcomes.labels(claim.model, "dead_lettered").inc()
        logger.warning("job %s dead-lettered: %s", claim.job_id, reason)

    async def _cache_status(self, claim: Claim) -> None:
        job = await self.store.get_job(claim.job_id)
        if job is not None:
            await self.cache.put(job)


async def run_worker(settings: CVWorkerSettings) -> None:
    worker = CVWorker(settings)
    loop = asyncio.get_running_loop()
    consuming: asyncio.Task[None] | None = None

    def stop() -> None:
        worker.stopping.set()
        if consuming is not None:
            consuming.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    await worker.start()
    consuming = asyncio.create_task(worker.run())
    with contextlib.suppress(asyncio.CancelledError):
        await consuming
    await worker.stop()


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(CVWorkerSettings, argv, prog="python -m kubemind_workers.worker")
    configure_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    provider = configure_tracing("kubemind-worker")
    try:
        asyncio.run(run_worker(settings))
    finally:
        shutdown_tracing(provider)
    return 0


if __name__ == "__main__":
    sys.exit(main())
