"""The async path end to end with real parts: Triton (`simple`), the job writer, CV worker
processes, RabbitMQ, Postgres, Redis and a local webhook receiver.

The failure windows of principle 14 are reached by SIGKILLing real workers at test-only kill
points; each test ends with every job stored exactly once and delivered.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from kubemind.processes import ServerProcess
from kubemind_predictors.triton.launcher import TritonServerProcess
from kubemind_workers.signing import verify
from tests.component.jobs_fixtures import (
    WAIT_SECONDS,
    WEBHOOK_SECRET,
    JobsPlumbing,
    RedisTarget,
    WebhookReceiver,
    WorkerProcess,
    assert_delivered,
    assert_stored_exactly_once,
    outputs,
    require_rabbitmq,
    running_workers,
    running_writer,
    simple_body,
    sql,
    start_worker,
    submit,
    submit_many,
    sync_results,
)
from tests.component.triton_fixtures import running_triton


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServerProcess]:
    with running_triton(tmp_path_factory.mktemp("jobs-triton"), ["simple"]) as server:
        yield server


@pytest.fixture(scope="module")
def plumbing(postgres_dsn: str, redis_target: RedisTarget) -> JobsPlumbing:
    return JobsPlumbing(postgres_dsn, redis_target, "rabbitmq", require_rabbitmq(), f"cv-jobs-test-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def writer(triton: TritonServerProcess, plumbing: JobsPlumbing, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_writer(triton, plumbing, tmp_path_factory.mktemp("jobs-writer") / "writer.log") as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as listening:
        yield listening


# -- end to end ---------------------------------------------------------------------------------------
def test_jobs_are_answered_by_signed_webhooks_equal_to_the_sync_path(
    writer: ServerProcess, plumbing: JobsPlumbing, triton: TritonServerProcess, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    count = 40
    jobs = submit_many(writer, receiver, count)
    with running_workers(writer.grpc_address, plumbing, tmp_path, 2, "--batch_size", "8", "--batch_wait_seconds", "0.05") as workers:
        assert_delivered(receiver, jobs, sync_results(writer, range(count)))
        ready = httpx.get(workers[0].metrics_url().replace("/metrics", "/v2/health/ready"), timeout=5)
        assert ready.status_code == 200  # consuming
    assert_stored_exactly_once(plumbing.database_url, list(jobs))
    hook = receiver.by_job()[next(iter(jobs))][0]
    verify(WEBHOOK_SECRET, hook.headers, hook.body)  # what a receiver runs
    status = httpx.get(f"{writer.http_url}/v2/jobs/{next(iter(jobs))}", timeout=10).json()
    assert status["state"] == "succeeded" and status["delivery"]["state"] == "delivered"
    assert outputs(status["result"]) == sync_results(writer, range(1))[0]
    batched = sql(plumbing.database_url, "SELECT count(DISTINCT worker) AS n FROM kubemind_job_attempts WHERE job_id::text = ANY($1)", list(jobs))
    assert batched[0]["n"] >= 1


def test_the_same_idempotency_key_returns_the_same_job(writer: ServerProcess, receiver: WebhookReceiver, plumbing: JobsPlumbing) -> None:
    key = f"upload-{uuid.uuid4()}"
    first = submit(writer, simple_body(1), receiver.url(), key)
    second = submit(writer, simple_body(1), receiver.url(), key)

    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    rows = sql(plumbing.database_url, "SELECT count(*) AS n FROM kubemind_jobs WHERE idempotency_key = $1", key)
    assert rows[0]["n"] == 1


def test_status_reads_postgres_when_the_cache_lost_it(writer: ServerProcess, receiver: WebhookReceiver, plumbing: JobsPlumbing) -> None:
    import redis

    job_id = submit(writer, simple_body(2), receiver.url()).json()["id"]
    redis.Redis.from_url(plumbing.redis.url).delete(f"{plumbing.redis.prefix}{job_id}")

    status = httpx.get(f"{writer.http_url}/v2/jobs/{job_id}", timeout=10)
    unknown = httpx.get(f"{writer.http_url}/v2/jobs/{uuid.uuid4()}", timeout=10)

    assert status.status_code == 200 and status.json()["id"] == job_id
    assert unknown.status_code == 404


def test_status_shows_running_while_a_worker_runs_the_job(
    writer: ServerProcess, plumbing: JobsPlumbing, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    import redis

    job_id = submit(writer, simple_body(5), receiver.url()).json()["id"]
    assert httpx.get(f"{writer.http_url}/v2/jobs/{job_id}", timeout=10).json()["state"] == "queued"
    # The stall point holds the worker between inference and storing (no other worker takes over).
    held = start_worker(writer.grpc_address, plumbing, tmp_path / "held.log",
                        "--kill_point", "stall_after_infer", "--stall_seconds", "3", "--batch_wait_seconds", "0")  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while "stall point reached" not in held.log():
            assert time.monotonic() < deadline and held.process.poll() is None, held.log()
            time.sleep(0.05)
        while_held = httpx.get(f"{writer.http_url}/v2/jobs/{job_id}", timeout=10).json()
        cached = redis.Redis.from_url(plumbing.redis.url).hget(f"{plumbing.redis.prefix}{job_id}", "status")
        receiver.wait_for([job_id], WAIT_SECONDS)
        deadline = time.monotonic() + WAIT_SECONDS
        while (after := httpx.get(f"{writer.http_url}/v2/jobs/{job_id}", timeout=10).json())["delivery"]["state"] != "delivered":
            assert time.monotonic() < deadline, after
            time.sleep(0.1)
    finally:
        held.stop()
    assert while_held["state"] == "running"
    assert cached is not None and json.loads(cached)["state"] == "running"  # the cache answered it, not Postgres
    assert after["state"] == "succeeded"


# -- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]},
        {**simple_body(0), "inputs": [dict(simple_body(0)["inputs"][0], shape=[1, 15]), simple_body(0)["inputs"][1]]},
        {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": [1] * 3}]},
        {"inputs": "not a list"},
    ],
    ids=["wrong-datatype", "wrong-shape", "short-data", "malformed"],
)
def test_bad_tensors_get_the_same_400_as_the_sync_route(writer: ServerProcess, receiver: WebhookReceiver, body: dict[str, Any]) -> None:
    sync = httpx.post(f"{writer.http_url}/v2/models/simple/infer", json=body, timeout=10)
    job = submit(writer, body, receiver.url())

    assert sync.status_code == job.status_code == 400
    assert job.json() == sync.json()


@pytest.mark.parametrize(
    ("callback", "says"),
    [
        ("http://10.1.2.3/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::1/hook", "malformed"),
        ("ftp://example.com/hook", "scheme"),
        ("", "required"),
    ],
)
def test_bad_callback_urls_get_400_naming_it(writer: ServerProcess, callback: str, says: str) -> None:
    reply = submit(writer, simple_body(0), callback)

    assert reply.status_code == 400
    assert reply.json()["error"].startswith("callback_url:")
    assert says in reply.json()["error"]


# -- the three failure windows -------------------------------------------------------------------------
def _run_kill_test(writer: ServerProcess, plumbing: JobsPlumbing, receiver: WebhookReceiver, tmp_path: Path, point: str) -> list[asyncpg.Record]:
    """12 jobs; a worker SIGKILLs itself at `point` in its first batch; a second worker finishes.
    Returns the killed worker's attempts."""
    count = 12
    jobs = submit_many(writer, receiver, count)
    doomed = start_worker(writer.grpc_address, plumbing, tmp_path / "doomed.log",
                          "--kill_point", point, "--worker_id", f"doomed-{point}")  # fmt: skip
    doomed.process.wait(WAIT_SECONDS)
    assert doomed.process.returncode == -9, doomed.log()
    with running_workers(writer.grpc_address, plumbing, tmp_path, 1):
        assert_delivered(receiver, jobs, sync_results(writer, range(count)))
    assert_stored_exactly_once(plumbing.database_url, list(jobs))
    return sql(plumbing.database_url, "SELECT job_id::text, token, outcome FROM kubemind_job_attempts WHERE worker = $1", f"doomed-{point}")


def test_worker_killed_after_inference_before_storing(writer: ServerProcess, plumbing: JobsPlumbing, receiver: WebhookReceiver, tmp_path: Path) -> None:
    doomed = _run_kill_test(writer, plumbing, receiver, tmp_path, "after_infer")

    assert doomed and {attempt["outcome"] for attempt in doomed} == {None}  # it stored nothing
    retaken = sql(plumbing.database_url, "SELECT count(*) AS n FROM kubemind_jobs WHERE id::text = ANY($1) AND result_token > 1",
                  [attempt["job_id"] for attempt in doomed])  # fmt: skip
    assert retaken[0]["n"] == len(doomed)  # each of its jobs was stored by the next attempt


def test_worker_killed_after_storing_before_ack(writer: ServerProcess, plumbing: JobsPlumbing, receiver: WebhookReceiver, tmp_path: Path) -> None:
    doomed = _run_kill_test(writer, plumbing, receiver, tmp_path, "after_store")

    # It stored its batch, died before the ack; the redelivered messages found the jobs finished,
    # so nothing ran or was stored twice (assert_stored_exactly_once).
    assert doomed and {attempt["outcome"] for attempt in doomed} == {"stored"}


def test_a_stale_attempt_finishing_late_changes_nothing(writer: ServerProcess, plumbing: JobsPlumbing, receiver: WebhookReceiver, tmp_path: Path) -> None:
    jobs = submit_many(writer, receiver, 4)
    stale = start_worker(writer.grpc_address, plumbing, tmp_path / "stale.log",
                         "--kill_point", "stall_after_infer", "--stall_seconds", "60", "--batch_size", "4",
                         "--batch_wait_seconds", "0.5")  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while "stall point reached" not in stale.log():
            assert time.monotonic() < deadline, stale.log()
            time.sleep(0.1)
        with running_workers(writer.grpc_address, plumbing, tmp_path, 1):
            assert_delivered(receiver, jobs, sync_results(writer, range(4)))
            deadline = time.monotonic() + WAIT_SECONDS
            while "is stale, result discarded" not in stale.log():
                assert time.monotonic() < deadline, stale.log()
                time.sleep(0.1)
    finally:
        stale.stop()
    assert_stored_exactly_once(plumbing.database_url, list(jobs))
    outcomes = sql(plumbing.database_url, "SELECT outcome, count(*) AS n FROM kubemind_job_attempts WHERE job_id::text = ANY($1) GROUP BY outcome", list(jobs))
    counts = {r["outcome"]: r["n"] for r in outcomes}
    assert counts["stored"] == 4 and counts.get("stale", 0) >= 1


def dead_letters(plumbing: JobsPlumbing) -> list[str]:
    """The job ids waiting in RabbitMQ's dead-letter queue `<topic>.dead` (taken off it)."""
    import asyncio
    import json

    import aio_pika

    async def drain() -> list[str]:
        connection = await aio_pika.connect(plumbing.broker_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(f"{plumbing.topic}.dead", passive=True)
            found = []
            while (message := await queue.get(fail=False, timeout=2)) is not None:
                found.append(json.loads(message.body)["job_id"])
                await message.ack()
            return found

    return asyncio.run(drain())


# -- Knative Eventing: the worker as a CloudEvents sink -------------------------------------------------
def test_the_worker_as_a_cloudevents_sink_answers_after_storing(
    writer: ServerProcess, plumbing: JobsPlumbing, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from kubemind.processes import free_port

    jobs = submit_many(writer, receiver, 8)
    port = free_port()
    sink = start_worker(writer.grpc_address, plumbing, tmp_path / "sink.log", "--broker", "cloudevents",
                        "--broker_url", f"127.0.0.1:{port}", "--batch_wait_seconds", "0.2")  # fmt: skip

    def deliver(job_id: str) -> int:
        """What a KafkaSource sends: a binary-mode CloudEvent whose body is the Kafka record."""
        headers = {"ce-specversion": "1.0", "ce-id": f"cv-jobs-0-{job_id}", "ce-source": "/apis/v1/namespaces/kubemind/kafkasources/cv-jobs",
                   "ce-type": "dev.knative.kafka.event", "content-type": "application/json"}  # fmt: skip
        body = {"job_id": job_id, "model": "simple", "model_version": "1"}
        return httpx.post(f"http://127.0.0.1:{port}/", json=body, headers=headers, timeout=60).status_code

    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while "receiving CloudEvents" not in sink.log():
            assert time.monotonic() < deadline and sink.process.poll() is None, sink.log()
            time.sleep(0.1)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(deliver, jobs))
        assert answers == [200] * 8
        stored = sql(plumbing.database_url, "SELECT count(*) AS n FROM kubemind_jobs WHERE state = 'succeeded' AND id::text = ANY($1)", list(jobs))
        assert stored[0]["n"] == 8  # answered only once stored
        assert deliver(next(iter(jobs))) == 200  # a redelivery: finished already, just acknowledged
        assert httpx.post(f"http://127.0.0.1:{port}/", content=b"not json", timeout=10).status_code == 400
        assert_delivered(receiver, jobs, sync_results(writer, range(8)))
        calls = next(line for line in sink.metrics().splitlines() if line.startswith("kubemind_jobs_batch_size_count"))
        assert float(calls.split()[-1]) < 8  # concurrent deliveries shared inference calls
    finally:
        sink.stop()
    assert_stored_exactly_once(plumbing.database_url, list(jobs))


# -- failures that end in a recorded failure ---------------------------------------------------------
def test_a_receiver_answering_500_forever_stops_at_the_limit(writer: ServerProcess, plumbing: JobsPlumbing, receiver: WebhookReceiver, tmp_path: Path) -> None:
    job_id = submit(writer, simple_body(3), receiver.url("/fail")).json()["id"]
    with running_workers(writer.grpc_address, plumbing, tmp_path, 1, "--webhook_max_attempts", "3"):
        deadline = time.monotonic() + WAIT_SECONDS
        while (status := httpx.get(f"{writer.http_url}/v2/jobs/{job_id}", timeout=10).json())["delivery"]["state"] != "failed":
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
    assert status["state"] == "succeeded"
    assert "500" in status["delivery"]["error"]
    attempts = sql(plumbing.database_url, "SELECT count(*) AS n FROM kubemind_webhook_attempts WHERE job_id::text = $1", job_id)
    assert attempts[0]["n"] == 3
    assert len(receiver.by_job()[job_id]) == 3


def test_a_job_that_keeps_failing_is_dead_lettered_as_failed(writer: ServerProcess, plumbing: JobsPlumbing, receiver: WebhookReceiver, tmp_path: Path) -> None:
    job_id = submit(writer, simple_body(4), receiver.url()).json()["id"]
    # A predictor address where nothing listens: every try fails with UNAVAILABLE.
    with running_workers("127.0.0.1:1", plumbing, tmp_path, 1, "--max_attempts", "2", "--retry_backoff_seconds", "0.05") as (worker,):
        hooks = receiver.wait_for([job_id], WAIT_SECONDS)
        metrics = worker.metrics()
    assert 'kubemind_jobs_outcomes_total{model="simple",outcome="dead_lettered"} 1.0' in metrics
    data = hooks[job_id][0].payload["data"]
    assert data["state"] == "failed" and "inference failed 2 times" in data["error"]
    assert dead_letters(plumbing) == [job_id]
    status = httpx.get(f"{writer.http_url}/v2/jobs/{job_id}", timeout=10).json()
    assert status["state"] == "failed"


# -- the kill storm (make test-storm) -------------------------------------------------------------------
@pytest.mark.storm
def test_kill_storm_loses_nothing_and_stores_nothing_twice(
    writer: ServerProcess, plumbing: JobsPlumbing, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    import random

    count = 1000
    jobs = submit_many(writer, receiver, count)
    rng = random.Random(12)
    kills = 0
    spawned = 0

    def spawn() -> WorkerProcess:
        nonlocal spawned
        spawned += 1
        return start_worker(writer.grpc_address, plumbing, tmp_path / f"worker-{spawned}.log", "--batch_size", "8")

    workers = [spawn(), spawn()]
    try:
        deadline = time.monotonic() + 600
        while len(receiver.by_job()) < count:
            assert time.monotonic() < deadline, f"{len(receiver.by_job())} of {count} delivered"
            time.sleep(rng.uniform(1.0, 2.0))
            if len(receiver.by_job()) >= count:
                break
            victim = workers.pop(rng.randrange(len(workers)))
            victim.kill()
            kills += 1
            workers.append(spawn())
        expected = sync_results(writer, range(count))
        assert_delivered(receiver, jobs, expected)
    finally:
        for worker in workers:
            worker.stop()
    assert_stored_exactly_once(plumbing.database_url, list(jobs))
    hooks = receiver.by_job()
    duplicates = sum(len(h) - 1 for job, h in hooks.items() if job in jobs)
    print(f"kill storm: {count} jobs, {kills} workers SIGKILLed, 0 lost, 0 stored twice, "
          f"{duplicates} duplicate webhook deliveries (same webhook-id)")  # fmt: skip
    assert kills >= 5
