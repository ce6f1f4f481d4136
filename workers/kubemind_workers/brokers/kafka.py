"""Kafka behind the broker seam (aiokafka): messages keyed by job id (one partition per job),
a consumer group, offsets committed by hand only after a batch's outcomes are stored, and a
dead-letter topic `<topic>.dead` whose records carry the reason in a header."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from kubemind.errors import BackendUnavailable
from kubemind.tracing import inject
from kubemind_workers.brokers import Message, trace_headers

logger = logging.getLogger("kubemind.workers.kafka")

HEALTH_TTL_SECONDS = 1.0
REQUEST_TIMEOUT_MS = 3000
# aiokafka retries a failing offset commit without end; past this the worker reconnects instead
# (the uncommitted records come again, and their claims find them finished).
COMMIT_TIMEOUT_SECONDS = 10.0
# While idle, how often a consumer checks that its topic still exists: a memory-only broker that
# restarts forgets it, and aiokafka would reconnect and wait on it forever.
TOPIC_CHECK_SECONDS = 2.0


class KafkaBroker:
    def __init__(self, bootstrap: str, topic: str, *, group: str, partitions: int, consumer: bool):
        self.bootstrap = bootstrap
        self.topic = topic
        self.dead_topic = f"{topic}.dead"
        self.group = group
        self.partitions = partitions
        self.consumer = consumer
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._healthy_at = 0.0
        self._topic_checked_at = 0.0

    async def start(self) -> None:
        await self._create_topics()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", request_timeout_ms=REQUEST_TIMEOUT_MS
        )
        await self._producer.start()
        if self.consumer:
            self._consumer = AIOKafkaConsumer(
                self.topic,
                bootstrap_servers=self.bootstrap,
                group_id=self.group,
                enable_auto_commit=False,  # committed after the outcome is stored
                auto_offset_reset="earliest",
                session_timeout_ms=6000,
                heartbeat_interval_ms=1000,
                request_timeout_ms=REQUEST_TIMEOUT_MS * 4,
            )
            await self._consumer.start()
        self._healthy_at = time.monotonic()

    async def _create_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
        await admin.start()
        try:
            for name in (self.topic, self.dead_topic):
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics([NewTopic(name, num_partitions=self.partitions, replication_factor=1)])
        finally:
            await admin.close()

    async def stop(self) -> None:
        consumer, producer, self._consumer, self._producer = self._consumer, self._producer, None, None
        for client in (consumer, producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()

    async def healthy(self) -> bool:
        if self._producer is None:
            return False
        if time.monotonic() - self._healthy_at < HEALTH_TTL_SECONDS:
            return True
        try:
            async with asyncio.timeout(1.0):
                metadata = await self._producer.client.fetch_all_metadata()
            if self.topic not in metadata.topics():
                # A broker that came back without the topic (a memory-only one): declare it again
                # before anything is produced, or the first produce would make it with defaults.
                await self._create_topics()
        except (KafkaError, TimeoutError, OSError):
            return False
        self._healthy_at = time.monotonic()
        return True

    async def publish(self, job_id: str, payload: dict[str, Any], timeout: float) -> None:
        if self._producer is None:
            raise BackendUnavailable(f"Kafka at {self.bootstrap} is not connected")
        try:
            async with asyncio.timeout(timeout):
                headers = [(key, value.encode()) for key, value in inject().items()]
                await self._producer.send_and_wait(self.topic, json.dumps(payload).encode(), key=job_id.encode(), headers=headers)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise BackendUnavailable(f"Kafka did not confirm job {job_id}: {type(exc).__name__}: {exc}") from None
        self._healthy_at = time.monotonic()

    async def next_batch(self, max_size: int, max_wait: float) -> list[Message]:
        if self._consumer is None:
            raise ConnectionError("the Kafka consumer is not started")
        records = await self._consumer.getmany(timeout_ms=1000, max_records=max_size)
        if not records:
            await self._check_topic()
            return []
        batch = [record for partition in records.values() for record in partition]
        if len(batch) < max_size and max_wait > 0:
            more = await self._consumer.getmany(timeout_ms=int(max_wait * 1000), max_records=max_size - len(batch))
            batch += [record for partition in more.values() for record in partition]
        messages = []
        for record in batch:
            payload = json.loads(record.value)
            messages.append(Message(str(payload["job_id"]), payload, record, trace_headers(record.headers)))
        return messages

    async def _check_topic(self) -> None:
        if self._producer is None or time.monotonic() - self._topic_checked_at < TOPIC_CHECK_SECONDS:
            return
        async with asyncio.timeout(REQUEST_TIMEOUT_MS / 1000):
            metadata = await self._producer.client.fetch_all_metadata()
        if self.topic not in metadata.topics():
            raise ConnectionError(f"topic {self.topic} is gone from the broker")
        self._topic_checked_at = time.monotonic()

    async def ack(self, messages: Sequence[Message]) -> None:
        if self._consumer is None or not messages:
            return
        offsets: dict[TopicPartition, int] = {}
        for message in messages:
            record = message.handle
            partition = TopicPartition(record.topic, record.partition)
            offsets[partition] = max(offsets.get(partition, 0), record.offset + 1)
        async with asyncio.timeout(COMMIT_TIMEOUT_SECONDS):
            await self._consumer.commit(offsets)

    async def dead_letter(self, message: Message, reason: str) -> None:
        if self._producer is None:
            raise ConnectionError("the Kafka producer is not started")
        record = message.handle
        await self._producer.send_and_wait(
            self.dead_topic, record.value, key=record.key, headers=[("kubemind-reason", reason.encode())]
        )
        # The offset is committed with the rest of the batch: committing it here could skip
        # earlier records of the partition whose outcome is not stored yet.

    async def drop_connection(self) -> None:
        await self.stop()


class KafkaEventSink:
    """The payload logger's Kafka sink (kubemind.payload_logger): CloudEvents in the Kafka
    protocol binding's binary mode, keyed by request id, a batch produced at once."""

    def __init__(self, bootstrap: str, topic: str, timeout: float):
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout = timeout
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, request_timeout_ms=int(self.timeout * 1000))
        try:
            await self._producer.start()
        except (KafkaError, OSError) as exc:
            # Not fatal: the server serves anyway, and every event sent meanwhile is a counted drop.
            logger.warning("payload sink: Kafka at %s not reachable yet: %s", self.bootstrap, exc)

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def send(self, events: Sequence[Any]) -> list[str | None]:
        if self._producer is None:
            return ["sink_error"] * len(events)
        try:
            sent = [await self._producer.send(self.topic, event.body, key=event.id.encode(), headers=event.kafka_headers())
                    for event in events]  # fmt: skip
        except (KafkaError, OSError):
            return ["sink_error"] * len(events)
        outcomes: list[str | None] = []
        for future in sent:
            try:
                await future
                outcomes.append(None)
            except (KafkaError, OSError):
                outcomes.append("sink_error")
        return outcomes
