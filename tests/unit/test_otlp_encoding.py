"""kubemind's OTLP span encoder writes what the SDK's encoder writes: the same
ExportTraceServiceRequest for every kind of span the SDK makes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from kubemind import otlp_encoding


class Kept(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _provider(kept: Kept, resource: Resource, limits: SpanLimits | None = None) -> TracerProvider:
    provider = TracerProvider(resource=resource, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(kept))
    return provider


def _spans() -> list[ReadableSpan]:
    kept = Kept()
    main = _provider(kept, Resource.create({"service.name": "svc", "k8s.pod.name": "p-1", "replicas": 3}, schema_url="https://x/1"))
    other = _provider(kept, Resource.create({"service.name": "other"}), SpanLimits(max_span_attributes=2, max_events=1, max_links=1))
    tracer = main.get_tracer("kubemind")
    scoped = main.get_tracer("scoped", "1.2.3", schema_url="https://scope/1", attributes={"scope.attr": "a"})
    remote = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1), TraceState([("k", "v"), ("a", "b")]))
    parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    values: dict[str, Any] = {
        "s": "text", "empty": "", "t": True, "f": False, "zero": 0, "neg": -5, "big": 2**62, "fl": 1.5, "fz": 0.0,
        "negzero": -0.0, "strs": ("a", ""), "ints": (1, -2), "bools": (True, False), "none": (), "bytes": b"\x00\x01",
        "unicode": "Grüße ✓",
    }  # fmt: skip
    with tracer.start_as_current_span("rest infer", context=parent, kind=SpanKind.SERVER, attributes=values) as server:
        server.add_event("queued", {"depth": 2})
        server.add_event("plain")
        with tracer.start_as_current_span("ModelInfer simple", kind=SpanKind.CLIENT) as client:
            client.set_status(Status(StatusCode.ERROR, "backend down"))
        with scoped.start_as_current_span("scoped", links=[Link(remote, {"why": "batch"}), Link(client.get_span_context())]):
            pass
        span = tracer.start_span("ok", kind=SpanKind.PRODUCER)
        span.set_status(Status(StatusCode.OK))
        span.end()
    limited = other.get_tracer("kubemind").start_span("limited", kind=SpanKind.CONSUMER, attributes={"a": 1, "b": 2, "c": 3},
                                                      links=[Link(remote), Link(remote)])  # fmt: skip
    limited.add_event("one")
    limited.add_event("two")
    limited.end()
    for index in range(3):  # the same pairs again: cached encodings
        with tracer.start_as_current_span("rest infer", kind=SpanKind.SERVER, attributes={"kubemind.endpoint": "infer", "n": index}):
            pass
    return kept.spans


def test_the_encoding_is_the_sdks() -> None:
    spans = _spans()
    assert any(s.dropped_attributes and s.dropped_events and s.dropped_links for s in spans)
    ours = ExportTraceServiceRequest.FromString(otlp_encoding.encode_bytes(spans))
    assert ours == sdk_encode_spans(spans)
    assert otlp_encoding.encode_spans(spans) == sdk_encode_spans(spans)
    serialized = otlp_encoding.encode_serialized(spans).SerializePartialToString()
    assert ExportTraceServiceRequest.FromString(serialized) == sdk_encode_spans(spans)
    # One span at a time too (a batch of one resource and scope), and again from the caches.
    for span in spans:
        assert otlp_encoding.encode_spans([span]) == sdk_encode_spans([span])


def test_install_points_both_otlp_exporters_at_it() -> None:
    from opentelemetry.exporter.otlp.proto.grpc import trace_exporter as grpc_exporter
    from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_exporter

    originals = (http_exporter.encode_spans, grpc_exporter.encode_spans)
    try:
        otlp_encoding.install()
        assert grpc_exporter.encode_spans is otlp_encoding.encode_spans
        assert http_exporter.encode_spans is otlp_encoding.encode_serialized
        otlp_encoding.install()  # twice: no change
        assert http_exporter.encode_spans is otlp_encoding.encode_serialized
    finally:
        http_exporter.encode_spans, grpc_exporter.encode_spans = originals
