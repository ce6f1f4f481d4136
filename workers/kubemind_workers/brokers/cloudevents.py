"""Knative Eventing behind the broker seam: a KafkaSource (or any source) delivers each job
message to the worker as a CloudEvent over HTTP (binary mode: the body is the message), and the
HTTP answer is the acknowledgement.

A request is answered only after its job's outcome is stored: 200 when the job is stored,
finished already, or dead-lettered by the worker (its failure is in Postgres and delivered by
webhook); 503 when this worker goes away first, so the source redelivers (its `delivery` retries,
then its `deadLetterSink`). Concurrent deliveries are grouped into micro-batches like any other
broker's messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kubemind.errors import BackendUnavailable
from kubemind_workers.brokers import Message, collect_batch, trace_headers

logger = logging.getLogger("kubemind.workers.cloudevents")

ANSWER_TIMEOUT_SECONDS = 120.0


class CloudEventsIngress:
    def __init__(self, listen: str):
        host, _, port = listen.rpartition(":")
        self.host = host or "0.0.0.0"
        self.port = int(port)
        self._received: asyncio.Queue[Message] = asyncio.Queue()
        self._pending: set[asyncio.Future[int]] = set()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._server is not None:
            return
        app = Starlette(routes=[Route("/", self._receive, methods=["POST"])])
        config = uvicorn.Config(app, host=self.host, port=self.port, log_config=None, access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        logger.info("receiving CloudEvents on http://%s:%d/", self.host, self.port)

    async def stop(self) -> None:
        self._answer_pending(503)
        server, task, self._server, self._task = self._server, self._task, None, None
        if server is not None and task is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await task

    def _answer_pending(self, status: int) -> None:
        for future in list(self._pending):
            if not future.done():
                future.set_result(status)

    async def _receive(self, request: Request) -> Response:
        try:
            payload = json.loads(await request.body())
            job_id = str(payload["job_id"])
        except (ValueError, KeyError, TypeError):
            # Not a job message: retrying cannot help, so the source should dead-letter it.
            return Response(b"not a kubemind job message", status_code=400)
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.add(answer)
        try:
            # Knative forwards the W3C headers; a CloudEvent may carry them as its distributed
            # tracing extension instead (ce-traceparent in binary mode).
            context = trace_headers(request.headers) or trace_headers(
                {key[3:]: value for key, value in request.headers.items() if key.startswith("ce-")}
            )
            await self._received.put(Message(job_id, payload, answer, context))
            status = await asyncio.wait_for(asyncio.shield(answer), ANSWER_TIMEOUT_SECONDS)
        except TimeoutError:
            status = 503
        finally:
            self._pending.discard(answer)
        return Response(status_code=status)

    async def healthy(self) -> bool:
        return self._server is not None and self._server.started

    async def publish(self, job_id: str, payload: dict[str, Any], timeout: float) -> None:
        raise BackendUnavailable("the CloudEvents ingress only receives; the writer publishes to Kafka")

    async def next_batch(self, max_size: int, max_wait: float) -> list[Message]:
        if self._server is None:
            raise ConnectionError("the CloudEvents listener is not running")
        return await collect_batch(self._received, max_size, max_wait)

    async def ack(self, messages: Sequence[Message]) -> None:
        for message in messages:
            if not message.handle.done():
                message.handle.set_result(200)

    async def dead_letter(self, message: Message, reason: str) -> None:
        # Stored as failed and delivered by webhook: the source must not redeliver it.
        if not message.handle.done():
            message.handle.set_result(200)

    async def drop_connection(self) -> None:
        self._answer_pending(503)
