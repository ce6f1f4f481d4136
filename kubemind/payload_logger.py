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

Unlike KServe's (kserve#6193), it never blocks and never loses silently: a request only puts its
events on a bounded in-memory queue (`put_nowait`); a background sender drains it in batches.
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
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge

from kubemind.errors import InvalidSettings
from kubemind.settings import ComponentSettings
from kubemind.telemetry import RequestRecord
from kubemind.tracing import inject

logger = logging.getLogger("kubemind.payload_logger")

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
SPEC_VERSION = "1.0"
SHUTDOWN_DRAIN_SECONDS = 5.0


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


class HttpSink:
    """POSTs each event to the URL (binary mode), a batch's events concurrently."""

    def __init__(self, url: str, timeout: float):
        self.url = url
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout, limits=httpx.Limits(max_connections=64))

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, events: Sequence[PayloadEvent]) -> list[str | None]:
        return list(await asyncio.gather(*(self._post(event) for event in events)))

    async def _post(self, event: PayloadEvent) -> str | None:
        assert self._client is not None
        try:
            reply = await self._client.post(self.url, content=event.body, headers=event.http_headers())
        except httpx.TimeoutException:
            return "timeout"
        except httpx.HTTPError:
            return "sink_error"
        return None if 200 <= reply.status_code < 300 else "sink_error"


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


class PayloadLogger:
    """Made by the pipeline; started and stopped with the server. Off when `log_url` is empty."""

    def __init__(self, settings: ComponentSettings, registry: CollectorRegistry):
        self.settings = settings
        self.enabled = bool(settings.log_url)
        self.log_requests = settings.log_mode in ("all", "request")
        self.log_responses = settings.log_mode in ("all", "response")
        self.metrics = PayloadMetrics(registry)
        self.source = settings.source_uri
        self._queue: asyncio.Queue[PayloadEvent] = asyncio.Queue(settings.log_queue_size)
        self._sink: EventSink | None = open_sink(settings.log_url, settings.log_timeout_seconds) if self.enabled else None
        self._task: asyncio.Task[None] | None = None
        self._sending = False

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
                while not self._queue.empty() or self._sending:
                    await asyncio.sleep(0.01)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        left = self._queue.qsize()
        while not self._queue.empty():
            self._queue.get_nowait()
        if left:
            self.metrics.dropped.labels("shutdown").inc(left)
            logger.warning("payload logger: %d events still queued at shutdown were dropped", left)
        self.metrics.queued.set(0)
        await self._sink.stop()

    # -- the request path: never waits ------------------------------------------------------------
    def request(self, record: RequestRecord, body: bytes, content_type: str) -> None:
        if self.enabled and self.log_requests:
            self._put(record, REQUEST_TYPE, body, content_type)

    def response(self, record: RequestRecord, body: bytes, content_type: str) -> None:
        if self.enabled and self.log_responses:
            self._put(record, RESPONSE_TYPE, body, content_type)

    def _put(self, record: RequestRecord, event_type: str, body: bytes, content_type: str) -> None:
        if not sampled(record.request_id, self.settings.log_sample_rate):
            self.metrics.sampled_out.inc()
            return
        event = PayloadEvent(self._attributes(record, event_type), body, content_type or "application/json")
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.metrics.dropped.labels("queue_full").inc()
            return
        self.metrics.queued.inc()

    def _attributes(self, record: RequestRecord, event_type: str) -> dict[str, str]:
        settings = self.settings
        attributes = {
            "id": record.request_id,
            "specversion": SPEC_VERSION,
            "type": event_type,
            "source": self.source,
            "time": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "inferenceservicename": settings.inference_service or record.model,
            "namespace": settings.namespace,
            "component": settings.component,
            "endpoint": settings.endpoint,
            "modelname": record.model,
            "modelversion": record.version,
            "kubemindroute": record.endpoint,
        }
        traceparent = inject(None).get("traceparent") if record.span is not None else None
        if traceparent:
            attributes["traceparent"] = traceparent
        return attributes

    # -- the sender -------------------------------------------------------------------------------
    async def _send_forever(self) -> None:
        assert self._sink is not None
        size = self.settings.log_batch_size
        while True:
            batch = [await self._queue.get()]
            while len(batch) < size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._sending = True
            try:
                outcomes = await self._deliver(batch)
            finally:
                self._sending = False
                self.metrics.queued.dec(len(batch))
            for event, reason in zip(batch, outcomes, strict=True):
                if reason is None:
                    self.metrics.sent.labels("request" if event.attributes["type"] == REQUEST_TYPE else "response").inc()
                else:
                    self.metrics.dropped.labels(reason).inc()

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


def log_grpc_payloads(payloads: PayloadLogger, record: RequestRecord, request: Any, reply: Any | None) -> None:
    """A gRPC ModelInfer's events: the v2 protobuf messages as sent (serialised only when on)."""
    payloads.request(record, request.SerializeToString(), GRPC_REQUEST_CONTENT_TYPE)
    if reply is not None:
        payloads.response(record, reply.SerializeToString(), GRPC_RESPONSE_CONTENT_TYPE)


__all__ = [
    "GRPC_REQUEST_CONTENT_TYPE",
    "GRPC_RESPONSE_CONTENT_TYPE",
    "REQUEST_TYPE",
    "RESPONSE_TYPE",
    "PayloadEvent",
    "PayloadLogger",
    "log_grpc_payloads",
    "sampled",
]
