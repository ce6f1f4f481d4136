"""OpenTelemetry traces: one server span per request, a span around every outbound call.

Configured by the standard variables, read once in a component's main() (`configure_tracing`):
`OTEL_TRACES_EXPORTER` (`otlp`, `console` or `none`), `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`
(`grpc` or `http/protobuf`, the spec's default), `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`,
`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`,
`OTEL_PROPAGATORS` and `OTEL_SDK_DISABLED`. One difference from the SDK's own defaults: with
neither an exporter nor an endpoint set, tracing stays off, so a server nobody asked to trace
installs no SDK tracer provider and every helper here returns at its first line (the API's
no-op is never even reached on the request path).

The tracer provider is OpenTelemetry's process-global one (the API's design: instrumented
libraries find it without being handed it); `configure_tracing` returns it so main() can flush
it on exit.

Context crosses hops in the W3C `traceparent`/`tracestate` headers (gRPC metadata, HTTP
headers, message headers of the job brokers); `outbound` replaces the allow-listed incoming
ones (settings.propagate_headers) with the current span's, so the next hop's span is a child of
this hop's client span rather than a sibling of it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from kubemind.telemetry import RequestRecord

logger = logging.getLogger("kubemind.tracing")

TRACER_NAME = "kubemind"
TRACE_HEADERS = ("traceparent", "tracestate")
_NO_SPAN = contextlib.nullcontext()
_state: dict[str, Any] = {"active": False}
"""Whether this process installed an SDK tracer provider: checked first by every helper, so a
process without tracing pays one dict lookup per hop."""


def _env(name: str, traces_name: str, default: str = "") -> str:
    return (os.environ.get(traces_name) or os.environ.get(name) or default).strip()


def tracing_requested() -> bool:
    """What the OTEL_* environment asks for (see the module docstring)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(_env("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure_tracing(default_service_name: str) -> TracerProvider | None:
    """Install the SDK tracer provider the environment asks for; None (and nothing installed)
    when it asks for none. `default_service_name` is used when OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES name no service."""
    if not tracing_requested():
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    resource = Resource.create({} if named else {SERVICE_NAME: default_service_name})
    provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
    exporters: list[SpanExporter] = []
    for name in (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(","):
        name = name.strip().lower()
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            exporters.append(_otlp_exporter())
        elif name and name != "none":
            logger.warning("OTEL_TRACES_EXPORTER: unknown exporter %r ignored", name)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _state.update(active=True, tracer=provider.get_tracer(TRACER_NAME))
    return provider


def _otlp_exporter() -> Any:
    protocol = _env("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    if protocol != "http/protobuf":
        logger.warning("OTEL_EXPORTER_OTLP_PROTOCOL %r is not supported; using http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()


def shutdown_tracing(provider: TracerProvider | None) -> None:
    """Flush and stop the exporters (at exit: the batch processor holds the last spans)."""
    if provider is not None:
        provider.shutdown()
        _state.update(active=False, tracer=None)


def active() -> bool:
    return bool(_state["active"])


def _tracer() -> trace.Tracer:
    tracer: trace.Tracer = _state["tracer"]
    return tracer


# -- context in headers ---------------------------------------------------------------------------
def extract(carrier: Mapping[str, str]) -> otel_context.Context | None:
    """The trace context that `carrier` (headers, metadata, a stored dict) carries."""
    if not _state["active"]:
        return None
    return propagate.extract(carrier)


def inject(ctx: otel_context.Context | None = None) -> dict[str, str]:
    """The current (or `ctx`'s) trace context as headers; empty when tracing is off."""
    if not _state["active"]:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    return carrier


def traceparent_of(span_of: Span) -> str | None:
    """The `traceparent` the configured propagators send for `span_of` (None when tracing is
    off or they send none: OTEL_PROPAGATORS without tracecontext)."""
    if not _state["active"]:
        return None
    return inject(trace.set_span_in_context(span_of)).get("traceparent")


def outbound(headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` to forward, with the trace context of the current span instead of the
    incoming one (unchanged when tracing is off)."""
    if not _state["active"]:
        return dict(headers)
    merged = {k: v for k, v in headers.items() if k.lower() not in TRACE_HEADERS}
    merged.update(inject())
    return merged


def outbound_metadata(metadata: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """`outbound` for gRPC metadata."""
    if not _state["active"]:
        return tuple(metadata)
    return tuple(outbound(dict(metadata)).items())


# -- spans ----------------------------------------------------------------------------------------
def span(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    parent: otel_context.Context | None = None,
    links: Sequence[Link] = (),
) -> contextlib.AbstractContextManager[Span | None]:
    """A span made current for the block (an error in it is recorded on it); a no-op when
    tracing is off. `parent` overrides the current context (a message's producer)."""
    if not _state["active"]:
        return _NO_SPAN
    return _tracer().start_as_current_span(name, context=parent, kind=kind, attributes=attributes, links=links)


def start_span(name: str, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None) -> Span | None:
    """A child of the current span that the caller ends (`.end()`), not made current: for work
    that spans an async generator's yields, where a current span would leak into the consumer."""
    if not _state["active"]:
        return None
    return _tracer().start_span(name, kind=kind, attributes=attributes)


def client_span(name: str, attributes: Mapping[str, Any] | None = None) -> contextlib.AbstractContextManager[Span | None]:
    return span(name, SpanKind.CLIENT, attributes)


P = ParamSpec("P")
R = TypeVar("R")


def traced(
    name: str, kind: SpanKind = SpanKind.CLIENT, attributes: Mapping[str, Any] | None = None
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate an async call (a Postgres statement, a Redis command) with a span, made only
    inside a trace: a background loop's polling starts no traces of its own."""

    def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(function)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if not _state["active"] or not trace.get_current_span().get_span_context().is_valid:
                return await function(*args, **kwargs)
            with _tracer().start_as_current_span(name, kind=kind, attributes=attributes):
                return await function(*args, **kwargs)

        return wrapper

    return decorate


def link_to(ctx: otel_context.Context | None) -> list[Link]:
    """A link to the span `ctx` holds (a batch's other messages)."""
    if ctx is None:
        return []
    span_context = trace.get_current_span(ctx).get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


def add_event(name: str, attributes: Mapping[str, Any] | None = None, timestamp_ns: int | None = None) -> None:
    """An event on the current span (the engine's queue, prefill and decode)."""
    if not _state["active"]:
        return
    trace.get_current_span().add_event(name, attributes=attributes, timestamp=timestamp_ns)


def set_attributes(attributes: Mapping[str, Any]) -> None:
    if _state["active"]:
        trace.get_current_span().set_attributes(attributes)


# -- the server span of a pipeline request --------------------------------------------------------
# Liveness and readiness, REST and gRPC: what the kubelet, KServe's queue proxy and `kubemind up`
# poll every second or so. Without a caller's trace context they get no span (a trace per probe
# would bury the requests); a traced caller's own health check is still traced.
PROBE_ENDPOINTS = frozenset({"live", "ready", "ServerLive", "ServerReady"})


def start_request_span(record: RequestRecord) -> None:
    """Open the request's server span (child of the caller's `traceparent`) and make it current
    for the task serving the request (uvicorn and grpc.aio serve each request in a task of its
    own, so the context ends with it even where `end_request_span` runs in another task: a
    streamed reply)."""
    if not _state["active"]:
        return
    if record.endpoint in PROBE_ENDPOINTS and "traceparent" not in record.headers:
        return
    rpc = record.protocol == "grpc"
    attributes = {
        "kubemind.endpoint": record.endpoint,
        "kubemind.protocol": record.protocol,
        "kubemind.request_id": record.request_id,
        ("rpc.system" if rpc else "network.protocol.name"): "grpc" if rpc else "http",
    }
    if record.model:
        attributes["kubemind.model"] = record.model
    # No trace header (the caller traces nothing): a root span, without running the propagators.
    parent = propagate.extract(record.headers) if "traceparent" in record.headers else None
    server_span = _tracer().start_span(f"{record.protocol} {record.endpoint}", context=parent, kind=SpanKind.SERVER, attributes=attributes)
    record.span = server_span
    record.trace_token = otel_context.attach(trace.set_span_in_context(server_span))


def end_request_span(record: RequestRecord) -> None:
    server_span = record.span
    if server_span is None:
        return
    if server_span.is_recording():  # a sampled-out request's span keeps nothing: nothing to set
        # What the request learnt on its way, in one call (one lock, one pass over the limits);
        # the model only when it is not the one the span started with.
        ended: dict[str, Any] = {"rpc.grpc.status_code" if record.protocol == "grpc" else "http.response.status_code": record.status}
        if record.model and server_span.attributes.get("kubemind.model") != record.model:
            ended["kubemind.model"] = record.model
        if record.version:
            ended["kubemind.model_version"] = record.version
        server_span.set_attributes(ended)
        if record.status >= 500:  # a 4xx is the client's error, not the server's (semantic conventions)
            server_span.set_status(Status(StatusCode.ERROR, record.error or None))
    server_span.end()
    record.span = None
    token, record.trace_token = record.trace_token, None
    if token is not None:
        # contextvars' own reset: OpenTelemetry's detach() would log an error for a token made in
        # another task's context (a stream finishes in its own task; that context ends anyway).
        with contextlib.suppress(ValueError, RuntimeError, AttributeError):
            token.var.reset(token)


def log_ids(span_of: Span | None = None) -> dict[str, str]:
    """trace_id and span_id (hex) of `span_of`, else of the current span; empty without one."""
    if not _state["active"]:
        return {}
    current = span_of if span_of is not None else trace.get_current_span()
    span_context = current.get_span_context()
    if not span_context.is_valid:
        return {}
    return {"trace_id": f"{span_context.trace_id:032x}", "span_id": f"{span_context.span_id:016x}"}


def remote_parent(carrier: Mapping[str, str] | None) -> otel_context.Context | None:
    """A context whose parent is the span `carrier` names; None when it names none."""
    if not _state["active"] or not carrier:
        return None
    ctx = propagate.extract(carrier)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


__all__ = [
    "SpanKind",
    "active",
    "add_event",
    "client_span",
    "configure_tracing",
    "end_request_span",
    "extract",
    "inject",
    "link_to",
    "log_ids",
    "outbound",
    "outbound_metadata",
    "remote_parent",
    "set_attributes",
    "shutdown_tracing",
    "span",
    "start_request_span",
    "start_span",
    "traced",
    "traceparent_of",
    "tracing_requested",
]
