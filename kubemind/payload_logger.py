"""The payload logger: every inference request and response as a CloudEvent, KServe-compatible.

KServe's agent sidecar does this for an InferenceService with a `logger` spec (`mode`, `url`);
kubemind's pipeline does it in-process, for every route, with the same events: binary-mode
CloudEvents whose body is the payload as sent, `Ce-Id` the request id (shared by the request's
and the response's event), `Ce-Type` `org.kubeflow.serving.inference.request` / `.response`,
`Ce-Source`, `Ce-Specversion`, `Ce-Time`, and KServe's extensions `Ce-Inferenceservicename`,
`Ce-Namespace`, `Ce-Component`, `Ce-Endpoint` — so receivers written for KServe (its message
dumper, Knative brokers, kubemind's drift service) read them unchanged. kubemind adds
`Ce-Modelname`, `Ce-Modelversion`, `Ce-Kubemindroute` (which route, so a reader knows the body's
shape) and, when tracing, the distributed-tracing extension `Ce-Traceparent`.

Unlike KServe's (kserve#6193), it never blocks and never loses silently: a request only appends
what its event needs (ids, time, body) to a bounded in-memory queue; a background sender makes
the CloudEvents (attributes, `Ce-Time`, `Ce-Traceparent`) and delivers them in batches, each
HTTP connection's share of a batch pipelined in one write.
Every event ends in exactly one of `kubemind_payload_events_sent_total` or
`kubemind_payload_events_dropped_total{reason}`: `queue_full` (the sink is slower than the
traffic), `sink_error` (it refused or was unreachable), `timeout`, `shutdown` (still queued when
the server stopped and the drain ran out of time). Sampled-out requests are counted apart
(`kubemind_payload_events_sampled_out_total`): they were never meant to be sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from kubemind.codecs import deserialize_bytes, serialize_bytes
from kubemind.errors import InvalidSettings
from kubemind.settings import ComponentSettings
from kubemind.telemetry import RequestRecord
from kubemind.tracing import traceparent_of

logger = logging.getLogger("kubemind.payload_logger")

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
SPEC_VERSION = "1.0"
SHUTDOWN_DRAIN_SECONDS = 5.0
BATCH_LINGER_SECONDS = 0.005
"""How long the sender, woken by a first event, lets a batch fill before it sends (when fewer
than a batch are queued): a few events a write rather than one or two, for a few ms' delay."""


@dataclass(frozen=True)
class PayloadEvent:
    """One CloudEvent in binary mode: its attributes (as `ce-` headers, lower-case) and body."""

    attributes: dict[str, str]
    body: bytes
    content_type: str

    @property
    def id(self) -> str:
        return self.attributes["id"]

    def http_headers(self) -> dict[str, str]:
        """The binary-mode HTTP binding: one `Ce-<attribute>` header per attribute."""
        return {"Content-Type": self.content_type, **{f"Ce-{name.capitalize()}": value for name, value in self.attributes.items()}}

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        """The binary-mode Kafka binding: `ce_<attribute>` headers, `content-type`."""
        return [("content-type", self.content_type.encode()), *((f"ce_{k}", v.encode()) for k, v in self.attributes.items())]


class EventSink(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, events: Sequence[PayloadEvent]) -> list[str | None]:
        """Deliver `events`; per event None (delivered) or the drop reason."""
        ...


class _Connection:
    """One keep-alive HTTP/1.1 connection to the sink.

    A minimal client rather than httpx: posting an event costs httpx about a millisecond of CPU
    on the server's own event loop, more than serving the `simple` request it logs. `post_many`
    pipelines (RFC 9112 section 9.3): every request in one write, then the responses in order,
    so a batch costs one write and a few reads rather than a round trip an event."""

    def __init__(self, host: str, port: int, tls: bool, path: str, timeout: float):
        self.host, self.port, self.tls, self.path, self.timeout = host, port, tls, path, timeout
        self._request_line = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, event: PayloadEvent) -> str | None:
        return (await self.post_many([event]))[0]

    async def post_many(self, events: Sequence[PayloadEvent]) -> list[str | None]:
        """Deliver `events` in order; per event None or the drop reason. When the sink fails or
        closes the connection, the event it was answering gets that outcome and the ones behind
        it are sent again on a new connection (a server answers nothing after a `close`)."""
        outcomes: list[str | None] = []
        pending = list(events)
        while pending:
            answered = await self._exchange(pending, outcomes)
            pending = pending[answered:]
        return outcomes

    async def _exchange(self, events: Sequence[PayloadEvent], outcomes: list[str | None]) -> int:
        """One pipelined exchange: how many of `events` got an outcome (at least one)."""
        done = 0
        loop = asyncio.get_running_loop()
        try:
            # One deadline, moved on at each response: each event has `timeout` for its answer.
            async with asyncio.timeout(loop.time() + self.timeout) as deadline:
                if self._writer is None or self._reader is None:
                    self._reader, self._writer = await asyncio.open_connection(self.host, self.port, ssl=self.tls or None)
                self._writer.write(b"".join(self._encode(event) for event in events))
                for _ in events:
                    status, close = await self._response(self._reader)
                    deadline.reschedule(loop.time() + self.timeout)
                    outcomes.append(None if 200 <= status < 300 else "sink_error")
                    done += 1
                    if close:
                        self.close()
                        return done
        except TimeoutError:
            self.close()
            outcomes.append("timeout")
            return done + 1
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            self.close()
            outcomes.append("sink_error")
            return done + 1
        return done

    def _encode(self, event: PayloadEvent) -> bytes:
        head = [self._request_line, f"Content-Length: {len(event.body)}\r\n"]
        head += [f"{name}: {value}\r\n" for name, value in event.http_headers().items()]
        head.append("\r\n")
        return "".join(head).encode("latin-1") + event.body

    @staticmethod
    async def _response(reader: asyncio.StreamReader) -> tuple[int, bool]:
        """The next response's status and whether the sink closes the connection after it."""
        status = int((await reader.readline()).split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            while (size := int((await reader.readline()).split(b";")[0], 16)) > 0:
                await reader.readexactly(size + 2)
            await reader.readline()
        elif length:
            await reader.readexactly(length)
        return status, close

    def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()


class HttpSink:
    """POSTs each event to the URL (binary mode), a batch's events over up to CONNECTIONS
    keep-alive connections at once (one for every LANE_EVENTS events: a small batch is not
    worth the extra round trips)."""

    CONNECTIONS = 4
    LANE_EVENTS = 8

    def __init__(self, url: str, timeout: float):
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        host, port = parts.hostname or "127.0.0.1", parts.port or (443 if tls else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.url = url
        self._connections = [_Connection(host, port, tls, path, timeout) for _ in range(self.CONNECTIONS)]

    async def start(self) -> None:
        pass  # connections open on first use (and again after a failure)

    async def stop(self) -> None:
        for connection in self._connections:
            connection.close()

    async def send(self, events: Sequence[PayloadEvent]) -> list[str | None]:
        outcomes: list[str | None] = [None] * len(events)

        async def drain(connection: _Connection, indexes: range) -> None:
            for index, outcome in zip(indexes, await connection.post_many([events[i] for i in indexes]), strict=True):
                outcomes[index] = outcome

        if len(events) <= self.LANE_EVENTS:
            return await self._connections[0].post_many(events)
        lanes = self._connections[: -(-len(events) // self.LANE_EVENTS)]
        await asyncio.gather(*(drain(c, range(i, len(events), len(lanes))) for i, c in enumerate(lanes)))
        return outcomes


def open_sink(url: str, timeout: float) -> EventSink:
    scheme = urlsplit(url).scheme
    if scheme in ("http", "https"):
        return HttpSink(url, timeout)
    if scheme == "kafka":
        # aiokafka is imported in one module, the jobs' Kafka broker; this extra needs kubemind[jobs].
        from kubemind_workers.brokers.kafka import KafkaEventSink

        parts = urlsplit(url)
        topic = parts.path.strip("/")
        if not parts.netloc or not topic:
            raise InvalidSettings(f"--log_url {url!r}: expected kafka://host:port/topic")
        return KafkaEventSink(parts.netloc, topic, timeout)
    raise InvalidSettings(f"--log_url {url!r}: the payload logger sends to http(s):// or kafka:// URLs")


def sampled(request_id: str, rate: float) -> bool:
    """Whether a request is logged: a function of its id, so its request and response events
    are both logged or both not (and every hop of a request agrees)."""
    if rate >= 1.0:
        return True
    return (zlib.crc32(request_id.encode()) & 0xFFFFFFFF) < rate * 2**32


class PayloadMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.sent = Counter(
            "kubemind_payload_events_sent", "Payload CloudEvents the sink accepted, by type.", ["type"], registry=registry
        )
        self.dropped = Counter(
            "kubemind_payload_events_dropped",
            "Payload CloudEvents not delivered, by reason (queue_full, sink_error, timeout, shutdown).",
            ["reason"],
            registry=registry,
        )
        self.sampled_out = Counter(
            "kubemind_payload_events_sampled_out", "Payload CloudEvents not made: the request was not sampled.", registry=registry
        )
        self.queued = Gauge("kubemind_payload_queue_depth", "Payload CloudEvents waiting for the sink.", registry=registry)


_Queued = tuple[str, str, str, str, str, float, Any, bytes, str]
"""What the request path leaves for an event: (type, request id, model, version, route, time
(epoch seconds), the request's span or None, body, content type). The sender makes the
CloudEvent of it (`PayloadLogger._made`)."""


class PayloadLogger:
    """Made by the pipeline; started and stopped with the server. Off when `log_url` is empty."""

    def __init__(self, settings: ComponentSettings, registry: CollectorRegistry):
        self.settings = settings
        self.enabled = bool(settings.log_url)
        self.log_requests = settings.log_mode in ("all", "request")
        self.log_responses = settings.log_mode in ("all", "response")
        self.metrics = PayloadMetrics(registry)
        self.source = settings.source_uri
        self._capacity = settings.log_queue_size
        self._queue: deque[_Queued] = deque()
        self._queued_event = asyncio.Event()
        """Set when the queue gets an event while the sender waits for one."""
        self._in_flight = 0
        """Events taken from the queue and not yet delivered or dropped."""
        self.metrics.queued.set_function(lambda: len(self._queue) + self._in_flight)
        self._sink: EventSink | None = open_sink(settings.log_url, settings.log_timeout_seconds) if self.enabled else None
        self._task: asyncio.Task[None] | None = None

    async def start(self, own_url: str) -> None:
        if self._sink is None:
            return
        self.source = self.settings.source_uri or own_url
        await self._sink.start()
        self._task = asyncio.create_task(self._send_forever())

    async def stop(self) -> None:
        """Deliver what is queued (at most SHUTDOWN_DRAIN_SECONDS), count the rest as dropped."""
        if self._task is None or self._sink is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_DRAIN_SECONDS):
                while self._queue or self._in_flight:
                    await asyncio.sleep(0.01)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        left = len(self._queue) + self._in_flight
        self._queue.clear()
        self._in_flight = 0
        if left:
            self.metrics.dropped.labels("shutdown").inc(left)
            logger.warning("payload logger: %d events still queued at shutdown were dropped", left)
        await self._sink.stop()

    # -- the request path: never waits ------------------------------------------------------------
    def request(self, record: RequestRecord, body: bytes, content_type: str) -> None:
        if self.enabled and self.log_requests:
            self._put(record, REQUEST_TYPE, body, content_type)

    def response(self, record: RequestRecord, body: bytes, content_type: str) -> None:
        if self.enabled and self.log_responses:
            self._put(record, RESPONSE_TYPE, body, content_type)

    def keeps_stream_response(self, record: RequestRecord) -> bool:
        """Whether a streamed reply keeps what it sends, for its response event once it ends
        (KServe's agent logs a stream's whole body after the handler returns); False when no
        response event will be made: logger off, request-only mode, or the request sampled out
        (counted here, as a response event not made)."""
        if not (self.enabled and self.log_responses):
            return False
        if not sampled(record.request_id, self.settings.log_sample_rate):
            self.metrics.sampled_out.inc()
            return False
        return True

    def _put(self, record: RequestRecord, event_type: str, body: bytes, content_type: str) -> None:
        """Append what the event needs; nothing is formatted here (the sender does it)."""
        if not sampled(record.request_id, self.settings.log_sample_rate):
            self.metrics.sampled_out.inc()
            return
        if len(self._queue) >= self._capacity:
            self.metrics.dropped.labels("queue_full").inc()
            return
        self._queue.append((event_type, record.request_id, record.model, record.version, record.endpoint, time.time(),
                            record.span, body, content_type))  # fmt: skip
        if not self._queued_event.is_set():
            self._queued_event.set()

    def event(self, record: RequestRecord, event_type: str, body: bytes, content_type: str) -> PayloadEvent:
        """The CloudEvent of `record`'s request or response (what the sink gets)."""
        return self._made((event_type, record.request_id, record.model, record.version, record.endpoint, time.time(),
                           record.span, body, content_type))  # fmt: skip

    def _made(self, queued: _Queued) -> PayloadEvent:
        event_type, request_id, model, version, route, at, span, body, content_type = queued
        settings = self.settings
        attributes = {
            "id": request_id,
            "specversion": SPEC_VERSION,
            "type": event_type,
            "source": self.source,
            "time": datetime.fromtimestamp(at, timezone.utc).isoformat().replace("+00:00", "Z"),
            "inferenceservicename": settings.inference_service or model,
            "namespace": settings.namespace,
            "component": settings.component,
            "endpoint": settings.endpoint,
            "modelname": model,
            "modelversion": version,
            "kubemindroute": route,
        }
        traceparent = traceparent_of(span) if span is not None else None
        if traceparent:
            attributes["traceparent"] = traceparent
        return PayloadEvent(attributes, body, content_type or "application/json")

    # -- the sender -------------------------------------------------------------------------------
    async def _send_forever(self) -> None:
        assert self._sink is not None
        size = self.settings.log_batch_size
        while True:
            if not self._queue:
                self._queued_event.clear()
                await self._queued_event.wait()
                if len(self._queue) < size:
                    await asyncio.sleep(BATCH_LINGER_SECONDS)
            count = min(size, len(self._queue))
            taken = [self._queue.popleft() for _ in range(count)]
            self._in_flight = count  # cancelled (shutdown) while delivering: stop() counts them
            try:
                batch = [self._made(queued) for queued in taken]
            except Exception:  # a bug here must neither stop the sender nor lose events uncounted
                logger.exception("payload logger: could not make %d events", count)
                self.metrics.dropped.labels("sink_error").inc(count)
                self._in_flight = 0
                continue
            outcomes = await self._deliver(batch)
            self._in_flight = 0
            sent = {REQUEST_TYPE: 0, RESPONSE_TYPE: 0}
            dropped: dict[str, int] = {}
            for event, reason in zip(batch, outcomes, strict=True):
                if reason is None:
                    sent[event.attributes["type"]] += 1
                else:
                    dropped[reason] = dropped.get(reason, 0) + 1
            for event_type, label in ((REQUEST_TYPE, "request"), (RESPONSE_TYPE, "response")):
                if sent[event_type]:
                    self.metrics.sent.labels(label).inc(sent[event_type])
            for reason, dropped_count in dropped.items():
                self.metrics.dropped.labels(reason).inc(dropped_count)

    async def _deliver(self, batch: Sequence[PayloadEvent]) -> Sequence[str | None]:
        assert self._sink is not None
        try:
            async with asyncio.timeout(self.settings.log_timeout_seconds * 2):
                return await self._sink.send(batch)
        except TimeoutError:
            return ["timeout"] * len(batch)
        except Exception as exc:  # a sink's own failure must not stop the sender
            logger.warning("payload sink: %s: %s", type(exc).__name__, exc)
            return ["sink_error"] * len(batch)


GRPC_REQUEST_CONTENT_TYPE = "application/x-protobuf; messageType=inference.ModelInferRequest"
GRPC_RESPONSE_CONTENT_TYPE = "application/x-protobuf; messageType=inference.ModelInferResponse"


def log_grpc_request(payloads: PayloadLogger, record: RequestRecord, request: Any) -> None:
    """A v2 gRPC request's event: the ModelInferRequest as sent (serialised only when on)."""
    if payloads.enabled and payloads.log_requests:
        payloads.request(record, request.SerializeToString(), GRPC_REQUEST_CONTENT_TYPE)


def log_grpc_payloads(payloads: PayloadLogger, record: RequestRecord, request: Any, reply: Any | None) -> None:
    """A gRPC ModelInfer's events: the v2 protobuf messages as sent (serialised only when on)."""
    log_grpc_request(payloads, record, request)
    if reply is not None and payloads.enabled and payloads.log_responses:
        # A passthrough reply (forward_grpc) is serialised already.
        body = reply if isinstance(reply, bytes) else reply.SerializeToString()
        payloads.response(record, body, GRPC_RESPONSE_CONTENT_TYPE)


def assembled_grpc_stream(replies: Sequence[Any]) -> Any:
    """The ModelInferResponses one request of a ModelStreamInfer got, as the one response they
    add up to (what a streamed REST reply's logged body is read as): a decoupled text
    generation's `text_output` deltas joined into its whole text. Each BYTES output is joined
    element by element across the responses that have it with the final one's shape; any other
    output, and everything else (id, model, version, parameters with `triton_final_response`),
    is the final response's. A single response is itself."""
    final = replies[-1]
    if len(replies) == 1:
        return final
    assembled = type(final)()
    assembled.CopyFrom(final)
    del assembled.raw_output_contents[:]
    for index, output in enumerate(final.outputs):
        raw = final.raw_output_contents[index] if index < len(final.raw_output_contents) else b""
        if output.datatype == "BYTES" and raw:
            count = int(np.prod(output.shape))
            pieces = [
                deserialize_bytes(output.name, reply.raw_output_contents[at], count)
                for reply in replies
                for at, other in enumerate(reply.outputs)
                if other.name == output.name and list(other.shape) == list(output.shape) and at < len(reply.raw_output_contents)
            ]
            if all(len(piece) == count for piece in pieces):
                raw = serialize_bytes(np.array([b"".join(elements) for elements in zip(*pieces, strict=True)], dtype=object))
        assembled.raw_output_contents.append(raw)
    return assembled


def log_grpc_stream_response(payloads: PayloadLogger, record: RequestRecord, replies: Sequence[Any]) -> None:
    """The response event of one request on a ModelStreamInfer call, once its last response is
    sent: the one ModelInferResponse its responses add up to (`assembled_grpc_stream`)."""
    if replies:
        payloads.response(record, assembled_grpc_stream(replies).SerializeToString(), GRPC_RESPONSE_CONTENT_TYPE)


__all__ = [
    "GRPC_REQUEST_CONTENT_TYPE",
    "GRPC_RESPONSE_CONTENT_TYPE",
    "REQUEST_TYPE",
    "RESPONSE_TYPE",
    "PayloadEvent",
    "PayloadLogger",
    "assembled_grpc_stream",
    "log_grpc_payloads",
    "log_grpc_request",
    "log_grpc_stream_response",
    "sampled",
]
