"""The async jobs path vs the synchronous route, same model, in one run (issue 12).

Two scenarios, each with its own sync baseline:

- images (the issue's figure): EfficientNet-Lite0. sync: images/s through the synchronous image
  transformer (JPEG in, top-k out) in front of the same predictor at concurrency 8; async: the
  same JPEG uploaded to the jobs route by 32 concurrent clients, through RabbitMQ to two CV
  workers (micro-batches of 8), jobs/s = jobs / (first submit -> last signed webhook received);
  goal >= 1.0x the sync rate (micro-batching must pay for the broker);
- simple: Triton's `simple` (two INT32 [1,16] tensors), v2 JSON, where inference costs nothing:
  what the path itself costs per job against one synchronous infer;
- end-to-end latency (submit -> webhook received) p50/p99 at 50% of the saturation rate;
- the broker's own produce -> consume rate for the same message (publisher confirms, manual
  acks): the ceiling, printed beside.

Triton, the writer, the workers, Postgres, RabbitMQ, the transformer and the load generator all
share this machine's cores, so the ratios, not the absolute rates, are the point.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
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
from tests.component.triton_fixtures import photo, running_transformer, running_triton

SECONDS = float(os.environ.get("KUBEMIND_BENCH_SECONDS", "6"))
CONCURRENCY = 8
# Saturation: enough submitters that the writer, not the load generator, is the limit.
SUBMITTERS = int(os.environ.get("KUBEMIND_BENCH_SUBMITTERS", "32"))
SATURATION_JOBS = int(os.environ.get("KUBEMIND_BENCH_JOBS", "600"))
IMAGE_JOBS = int(os.environ.get("KUBEMIND_BENCH_IMAGE_JOBS", "240"))
WORKERS = 2
CLASSIFIER = "efficientnet_lite0"


@dataclass(frozen=True)
class Scenario:
    """One model's sync request and job submission, as its clients send them."""

    name: str
    model: str
    jobs: int

    def sync_request(self, client: httpx.AsyncClient, url: str) -> Any:
        if self.model == CLASSIFIER:  # the image transformer's v2 BYTES input: the encoded image
            body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [IMAGE_B64]}]}
        else:
            body = simple_body(1)
        return client.post(f"{url}/v2/models/{self.model}/infer", json=body)

    def submit_request(self, client: httpx.AsyncClient, url: str, callback: str, seed: int, key: str) -> Any:
        headers = {"idempotency-key": key}
        if self.model == CLASSIFIER:  # an image upload: the raw JPEG, the callback in the query
            return client.post(f"{url}/v2/models/{self.model}/jobs", content=IMAGE, params={"callback_url": callback},
                               headers={**headers, "content-type": "image/jpeg"})  # fmt: skip
        return client.post(f"{url}/v2/models/{self.model}/jobs", json={**simple_body(seed), "callback_url": callback},
                           headers=headers)  # fmt: skip


IMAGE = photo("coffee")
IMAGE_B64 = base64.b64encode(IMAGE).decode()


async def sync_rate(url: str, scenario: Scenario) -> float:
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(20):
            (await scenario.sync_request(client, url)).raise_for_status()
        done = 0
        deadline = time.monotonic() + SECONDS

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                reply = await scenario.sync_request(client, url)
                reply.raise_for_status()
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))
        return done / (time.monotonic() - started)


RETRIED_SUBMITS = 0
"""Submits answered 503 and sent again, as the writer's message asks."""


async def submit(client: httpx.AsyncClient, url: str, scenario: Scenario, callback: str, seed: int) -> tuple[str, float]:
    """As a client following the writer's contract: a 503 (the broker did not confirm within
    publish_timeout_seconds; the job is kept) is retried with the same Idempotency-Key, which
    gets the same job."""
    global RETRIED_SUBMITS
    at = time.monotonic()
    key = uuid.uuid4().hex
    for attempt in range(10):
        reply = await scenario.submit_request(client, url, callback, seed, key)
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


async def saturation(url: str, receiver: WebhookReceiver, scenario: Scenario) -> float:
    queue = list(range(scenario.jobs))
    submitted: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=30) as client:

        async def loop() -> None:
            while queue:
                job, at = await submit(client, url, scenario, receiver.url(), queue.pop())
                submitted[job] = at

        await asyncio.gather(*(loop() for _ in range(SUBMITTERS)))
    arrived = await asyncio.to_thread(wait_all, receiver, list(submitted))
    return len(submitted) / (max(arrived.values()) - min(submitted.values()))


async def latency_at(url: str, receiver: WebhookReceiver, scenario: Scenario, rate: float) -> list[float]:
    submitted: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=30) as client:
        tasks = []
        started = time.monotonic()
        for n in range(int(rate * SECONDS)):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            tasks.append(asyncio.create_task(submit(client, url, scenario, receiver.url(), n)))
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


def measure(scenario: Scenario, writer_url: str, sync_url: str, receiver: WebhookReceiver) -> dict[str, Any]:
    sync = asyncio.run(sync_rate(sync_url, scenario))
    saturated = asyncio.run(saturation(writer_url, receiver, scenario))
    latencies = np.array(asyncio.run(latency_at(writer_url, receiver, scenario, saturated / 2))) * 1000
    return {
        "sync": sync,
        "async": saturated,
        "p50": float(np.percentile(latencies, 50)),
        "p99": float(np.percentile(latencies, 99)),
    }


def main() -> None:
    rabbitmq = require_rabbitmq()
    workdir = Path(tempfile.mkdtemp(prefix="kubemind-bench-jobs-"))
    scenarios = [Scenario("images", CLASSIFIER, IMAGE_JOBS), Scenario("simple", "simple", SATURATION_JOBS)]
    figures: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        dsn = stack.enter_context(fresh_database())
        redis = stack.enter_context(redis_service())
        plumbing = JobsPlumbing(dsn, redis, "rabbitmq", rabbitmq, f"bench-jobs-{uuid.uuid4().hex[:8]}")
        triton = stack.enter_context(running_triton(workdir, ["simple", CLASSIFIER]))
        writer = stack.enter_context(running_writer(triton, plumbing, workdir / "writer.log"))
        # The synchronous image path: the image transformer in front of the writer's own predictor.
        transformer = stack.enter_context(running_transformer(writer.grpc_address, workdir))
        receiver = stack.enter_context(WebhookReceiver())
        stack.enter_context(running_workers(writer.grpc_address, plumbing, workdir, WORKERS,
                                            "--batch_size", "8", "--batch_wait_seconds", "0.01"))  # fmt: skip
        for scenario in scenarios:
            sync_url = transformer.http_url if scenario.model == CLASSIFIER else writer.http_url
            figures[scenario.name] = measure(scenario, writer.http_url, sync_url, receiver)
        ceiling = asyncio.run(broker_rate(rabbitmq))
    print(f"{'':<12}{'sync /s (c=8)':>14}{'async jobs/s':>14}{'async/sync':>12}{'p50 ms':>9}{'p99 ms':>9}  (latency at 50% of saturation)")
    for name, row in figures.items():
        print(f"{name:<12}{row['sync']:>14.1f}{row['async']:>14.1f}{row['async'] / row['sync']:>11.2f}x{row['p50']:>9.1f}{row['p99']:>9.1f}")
    print(f"RabbitMQ produce->consume: {ceiling:.0f} msgs/s (the broker's ceiling); submits retried after a 503 (same key): {RETRIED_SUBMITS}")
    images = figures["images"]
    print(f"images async/sync {images['async'] / images['sync']:.2f}x (goal >= 1.00x: jobs/s through the async path vs images/s "
          "through the synchronous transformer, same model, concurrency 8)")
