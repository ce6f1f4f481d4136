"""The broker seam: one small interface over Kafka and RabbitMQ (each SDK imported in one module).

Delivery is at least once: a message is acknowledged (RabbitMQ ack, Kafka offset commit) only
after its job's result or failure is stored, so a worker that dies before that gets the message
redelivered; the store's fencing token makes the redelivery harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from kubemind.tracing import TRACE_HEADERS
from kubemind_workers.settings import JobPlumbingSettings


@dataclass
class Message:
    """One job message as a consumer received it."""

    job_id: str
    payload: dict[str, Any]
    handle: Any = field(repr=False, default=None)
    """The broker's own delivery object (aio-pika IncomingMessage, aiokafka ConsumerRecord)."""
    trace_context: dict[str, str] = field(default_factory=dict)
    """The producer's trace context, from the message headers (kubemind.tracing)."""


class Broker(Protocol):
    async def start(self) -> None:
        """Connect and declare the topic (queue) and its dead-letter topic (queue)."""

    async def stop(self) -> None: ...

    async def healthy(self) -> bool:
        """Whether a publish can succeed now (the writer answers 503 when not)."""

    async def publish(self, job_id: str, payload: dict[str, Any], timeout: float) -> None:
        """Publish and wait for the broker's confirmation; BackendUnavailable when it cannot.
        The current trace context goes in the message headers (kubemind.tracing.inject)."""

    async def next_batch(self, max_size: int, max_wait: float) -> list[Message]:
        """Up to max_size messages: waits for the first, then at most max_wait for the rest."""

    async def ack(self, messages: Sequence[Message]) -> None:
        """Done with these (their outcome is stored): never redeliver them."""

    async def dead_letter(self, message: Message, reason: str) -> None:
        """Move the message to the dead-letter topic (queue). The caller still passes the rest of
        its batch to ack(), never this message (RabbitMQ has settled it already; Kafka commits
        offsets per partition, up to the highest acknowledged one)."""

    async def drop_connection(self) -> None:
        """Tests only: vanish without acknowledging, so the broker redelivers to another worker."""


def trace_headers(headers: Any) -> dict[str, str]:
    """The trace-context entries of a message's headers (str or bytes values, a mapping or a
    list of pairs)."""
    if not headers:
        return {}
    pairs = headers.items() if hasattr(headers, "items") else headers
    picked = {}
    for key, value in pairs:
        if str(key).lower() in TRACE_HEADERS:
            picked[str(key).lower()] = value.decode() if isinstance(value, bytes) else str(value)
    return picked


ItemT = TypeVar("ItemT")


async def collect_batch(queue: asyncio.Queue[ItemT], max_size: int, max_wait: float, idle: float = 1.0) -> list[ItemT]:
    """For pushing brokers: wait up to `idle` for a first item, then at most `max_wait` for
    more, up to `max_size`."""
    try:
        first = await asyncio.wait_for(queue.get(), timeout=idle)
    except TimeoutError:
        return []
    batch = [first]
    loop = asyncio.get_running_loop()
    until = loop.time() + max_wait
    while len(batch) < max_size:
        left = until - loop.time()
        try:
            batch.append(queue.get_nowait() if left <= 0 else await asyncio.wait_for(queue.get(), left))
        except (TimeoutError, asyncio.QueueEmpty):
            break
    return batch


def open_broker(settings: JobPlumbingSettings, *, consumer: bool, prefetch: int = 16) -> Broker:
    if settings.broker == "cloudevents":
        from kubemind_workers.brokers.cloudevents import CloudEventsIngress

        return CloudEventsIngress(settings.broker_url)
    if settings.broker == "rabbitmq":
        from kubemind_workers.brokers.rabbitmq import RabbitMQBroker

        return RabbitMQBroker(settings.broker_url, settings.topic, consumer=consumer, prefetch=prefetch)
    from kubemind_workers.brokers.kafka import KafkaBroker

    return KafkaBroker(
        settings.broker_url,
        settings.topic,
        group=settings.consumer_group,
        partitions=settings.partitions,
        consumer=consumer,
    )


__all__ = ["Broker", "Message", "collect_batch", "open_broker", "trace_headers"]
