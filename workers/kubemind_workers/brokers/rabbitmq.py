"""RabbitMQ behind the broker seam (aio-pika): a durable queue, manual acks, publisher confirms,
and a dead-letter exchange whose queue `<topic>.dead` holds the rejected messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from kubemind.errors import BackendUnavailable
from kubemind.tracing import inject
from kubemind_workers.brokers import Message, collect_batch, trace_headers

logger = logging.getLogger("kubemind.workers.rabbitmq")

CONNECT_TIMEOUT_SECONDS = 2.0
RETRY_CONNECT_SECONDS = 1.0


class RabbitMQBroker:
    def __init__(self, url: str, topic: str, *, consumer: bool, prefetch: int):
        self.url = url
        self.topic = topic
        self.consumer = consumer
        self.prefetch = prefetch
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._received: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._connecting = asyncio.Lock()
        self._retry_at = 0.0

    def _connected(self) -> bool:
        """The channel, not just the connection: when the broker dies, aio-pika closes the channel
        but may leave the connection object saying open (its reader exited abnormally)."""
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def start(self) -> None:
        async with self._connecting:
            if self._connected():
                return
            # Not connect_robust: a lost connection must be seen (the writer answers 503), and
            # unacknowledged deliveries must go back to the queue rather than be replayed here.
            self._connection = await aio_pika.connect(self.url, timeout=CONNECT_TIMEOUT_SECONDS)
            self._channel = await self._connection.channel(publisher_confirms=True)
            dead_exchange = await self._channel.declare_exchange(
                f"{self.topic}.dlx", aio_pika.ExchangeType.DIRECT, durable=True
            )
            dead_queue = await self._channel.declare_queue(f"{self.topic}.dead", durable=True)
            await dead_queue.bind(dead_exchange, routing_key=self.topic)
            self._queue = await self._channel.declare_queue(
                self.topic,
                durable=True,
                arguments={"x-dead-letter-exchange": f"{self.topic}.dlx", "x-dead-letter-routing-key": self.topic},
            )
            if self.consumer:
                self._received = asyncio.Queue()
                await self._channel.set_qos(prefetch_count=self.prefetch)
                await self._queue.consume(self._received.put, no_ack=False)

    async def stop(self) -> None:
        connection, self._connection, self._channel, self._queue = self._connection, None, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def healthy(self) -> bool:
        """Connected, or reconnected now; after a failed reconnect, False without trying again
        for RETRY_CONNECT_SECONDS (every request must not wait out a connect timeout)."""
        if not self._connected():
            if time.monotonic() < self._retry_at:
                return False
            try:
                await self.stop()
                await self.start()
            except Exception:
                self._retry_at = time.monotonic() + RETRY_CONNECT_SECONDS
                return False
        return self._connected()

    async def publish(self, job_id: str, payload: dict[str, Any], timeout: float) -> None:
        try:
            if not await self.healthy() or self._channel is None:
                raise BackendUnavailable(f"RabbitMQ at {self.url} is unreachable")
            message = aio_pika.Message(
                json.dumps(payload).encode(),
                message_id=job_id,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers=dict(inject()),
            )
            async with asyncio.timeout(timeout):
                await self._channel.default_exchange.publish(message, routing_key=self.topic)
        except BackendUnavailable:
            raise
        except Exception as exc:
            raise BackendUnavailable(f"RabbitMQ did not confirm job {job_id}: {type(exc).__name__}: {exc}") from None

    async def next_batch(self, max_size: int, max_wait: float) -> list[Message]:
        if not self._connected():
            raise ConnectionError("RabbitMQ connection is closed")
        return [self._message(incoming) for incoming in await collect_batch(self._received, max_size, max_wait)]

    @staticmethod
    def _message(incoming: AbstractIncomingMessage) -> Message:
        payload = json.loads(incoming.body)
        return Message(str(payload.get("job_id") or incoming.message_id), payload, incoming, trace_headers(incoming.headers))

    async def ack(self, messages: Sequence[Message]) -> None:
        for message in messages:
            await message.handle.ack()

    async def dead_letter(self, message: Message, reason: str) -> None:
        # Rejected without requeue: RabbitMQ routes it through the dead-letter exchange.
        await message.handle.reject(requeue=False)

    async def drop_connection(self) -> None:
        await self.stop()
