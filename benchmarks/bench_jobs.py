"""The async jobs path vs the synchronous route, same model and server, in one run (issue 12).

- sync: POST /v2/models/simple/infer at concurrency 8 -> inferences/s;
- async at saturation: jobs submitted by 32 concurrent clients through RabbitMQ to two CV workers
  (micro-batches of 8); jobs/s = jobs / (first submit -> last signed webhook received);
  goal >= 1.0x the sync rate (micro-batching must pay for the broker);
- end-to-end latency (submit -> webhook received) p50/p99 at 50% of that saturation rate;
- the broker's own produce -> consume rate for the same message (publisher confirms, manual
  acks): the ceiling, printed beside.

The model is Triton's `simple` (two INT32 [1,16] tensors): on this 2-core machine shared by
Triton, the writer, two workers, Postgres, RabbitMQ and the load generator, EfficientNet would
measure the CPU, not the path. Everything shares the cores, so the ratios are the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.component.jobs_fixtures import (
    JobsPlumbing,
    WebhookReceiver,
    fresh_database,
    redis_service,
    require_rabbitmq,
    running_workers,
    running_writer,
    simple_body,
)
from tests.component.triton_fixtures import running_triton

SECONDS = float(os.environ.get("KUBEMIND_BENCH_SECONDS", "6"))
CONCURRENCY = 8
# Saturation: enough submitters that the writer, not the load generator, is the limit.
SUBMITTERS = int(os.environ.get("KUBEMIND_BENCH_SUBMITTERS", "32"))
SATURATION_JOBS = int(os.environ.get("KUBEMIND_BENCH_JOBS", "600"))
WORKERS = 2


async def sync_rate(url: str) -> float:
    body = simple_body(1)
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(20):
            await client.post(f"{url}/v2/models/simple/infer", json=body)
        done = 0
        deadline = time.monotonic() + SECONDS

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                reply = await client.post(f"{url}/v2/models/simple/infer", json=body)
                reply.raise_for_status()
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))
        return done / (time.monotonic() - started)


RETRIED_SUBMITS = 0
"""Submits answered 503 and sent again, as the writer's message asks."""


async def submit(client: httpx.AsyncClient, url: str, callback: str, seed: int) -> tuple[str, float]:
    """As a client following the writer's contract: a 503 (the broker did not confirm within
    publish_timeout_seconds; the job is kept) is retried with the same Idempotency-Key, which
    gets the same job."""
    global RETRIED_SUBMITS
    at = time.monotonic()
    key = uuid.uuid4().hex
    for attempt in range(10):
        reply = await client.post(f"{url}/v2/models/simple/jobs", json={**simple_body(seed), "callback_url": callback},
                                  headers={"idempotency-key": key})
        if reply.status_code != 503 or attempt == 9:
            break
        RETRIED_SUBMITS += 1
        await asyncio.sleep(0.2)
    if reply.status_code != 202:  # the writer's own reason, not only the status
        raise RuntimeError(f"submit answered {reply.status_code}: {reply.text[:500]}")
    return reply.json()["id"], at


def wait_all(receiver: WebhookReceiver, ids: list[str], timeout: float = 300) -> dict[str, float]:
    found = receiver.wait_for(ids, timeout)
    return {job: min(hook.at for hook in found[job]) for job in ids}


async def saturation(url: str, receiver: WebhookReceiver) -> float:
    queue = list(range(SATURATION_JOBS))
    submitted: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=30) as client:

        async def loop() -> None:
            while queue:
                job, at = await submit(client, url, receiver.url(), queue.pop())
                submitted[job] = at

        await asyncio.gather(*(loop() for _ in range(SUBMITTERS)))
    arrived = await asyncio.to_thread(wait_all, receiver, list(submitted))
    return len(submitted) / (max(arrived.values()) - min(submitted.values()))


async def latency_at(url: str, receiver: WebhookReceiver, rate: float) -> list[float]:
    submitted: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=30) as client:
        tasks = []
        started = time.monotonic()
        for n in range(int(rate * SECONDS)):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            tasks.append(asyncio.create_task(submit(client, url, receiver.url(), n)))
        for job, at in await asyncio.gather(*tasks):
            submitted[job] = at
    arrived = await asyncio.to_thread(wait_all, receiver, list(submitted))
    return [arrived[job] - submitted[job] for job in submitted]


async def broker_rate(url: str, count: int = 5000) -> float:
    """RabbitMQ alone, the job message's size: publish with confirms, consume with manual acks."""
    import aio_pika

    body = json.dumps({"job_id": str(uuid.uuid4()), "model": "simple", "model_version": "1"}).encode()
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(f"bench-{uuid.uuid4().hex[:8]}", auto_delete=True)
        await channel.set_qos(prefetch_count=64)
        received = asyncio.Event()
        got = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal got
            await message.ack()
            got += 1
            if got == count:
                received.set()

        await queue.consume(on_message)
        started = time.monotonic()
        for offset in range(0, count, 100):
            await asyncio.gather(*(
                channel.default_exchange.publish(aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue.name)
                for _ in range(min(100, count - offset))
            ))  # fmt: skip
        await received.wait()
        return count / (time.monotonic() - started)


def main() -> None:
    rabbitmq = require_rabbitmq()
    workdir = Path(tempfile.mkdtemp(prefix="kubemind-bench-jobs-"))
    with contextlib.ExitStack() as stack:
        dsn = stack.enter_context(fresh_database())
        redis = stack.enter_context(redis_service())
        plumbing = JobsPlumbing(dsn, redis, "rabbitmq", rabbitmq, f"bench-jobs-{uuid.uuid4().hex[:8]}")
        triton = stack.enter_context(running_triton(workdir, ["simple"]))
        writer = stack.enter_context(running_writer(triton, plumbing, workdir / "writer.log"))
        receiver = stack.enter_context(WebhookReceiver())
        stack.enter_context(running_workers(writer.grpc_address, plumbing, workdir, WORKERS,
                                            "--batch_size", "8", "--batch_wait_seconds", "0.01"))  # fmt: skip
        sync = asyncio.run(sync_rate(writer.http_url))
        saturated = asyncio.run(saturation(writer.http_url, receiver))
        latencies = np.array(asyncio.run(latency_at(writer.http_url, receiver, saturated / 2))) * 1000
        ceiling = asyncio.run(broker_rate(rabbitmq))
    report: dict[str, Any] = {
        "sync inferences/s (concurrency 8)": round(sync, 1),
        "async jobs/s at saturation": round(saturated, 1),
        "async/sync": round(saturated / sync, 2),
        "latency p50 ms at 50% saturation": round(float(np.percentile(latencies, 50)), 1),
        "latency p99 ms at 50% saturation": round(float(np.percentile(latencies, 99)), 1),
        "RabbitMQ produce->consume msgs/s": round(ceiling, 1),
        "submits retried after a 503 (same key)": RETRIED_SUBMITS,
    }
    for key, value in report.items():
        print(f"{key:<40}{value:>10}")
    print(f"async/sync {saturated / sync:.2f}x (goal >= 1.00x); broker ceiling {ceiling:.0f} msgs/s")
