"""A faster `encode_spans` for the OTLP exporters: the same ExportTraceServiceRequest, written
as protobuf wire bytes directly.

The SDK's encoder builds a protobuf object per span, per attribute and per attribute value
(about 30 µs a span on the batch span processor's thread, holding the GIL while the event loop
waits: most of what tracing costs a `simple` request). This one writes the bytes, with each
(key, value) pair's encoding cached (a server's spans repeat their endpoint, protocol and model
on every span), and parses them back into the message the exporters take (a C-speed parse).
It mirrors opentelemetry-exporter-otlp-proto-common's `encode_spans` field by field (resource
and scope grouping, flags, status, events, links, dropped counts), which
tests/unit/test_otlp_encoding.py holds it to; for anything it does not expect it falls back to
the SDK's own encoder.

`install()` (from kubemind.tracing.configure_tracing) points both OTLP span exporters (HTTP and
gRPC) at it; the HTTP one gets the bytes as they are (it only serialises the message).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan

logger = logging.getLogger("kubemind.tracing")

HAS_IS_REMOTE = 0x100
IS_REMOTE = 0x200
CACHE_SIZE = 4096
"""(key, value) encodings kept; cleared when full (unique values, request ids, churn through it)."""

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_key_values: dict[tuple[int, str, type, Any], bytes] = {}


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return bytes((value,))
    if value < 0:
        value += 1 << 64  # int64: two's complement, ten bytes
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (`tag` is the field number shifted, with wire type 2)."""
    return bytes((tag,)) + _varint(len(payload)) + payload


def _string(tag: int, text: str) -> bytes:
    return _field(tag, text.encode("utf-8")) if text else b""


def _any_value(value: Any) -> bytes:
    """An AnyValue's fields (what `_encode_value` of the SDK makes). Its value is a oneof: set,
    it is written even when it is the default (False, 0, "")."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(0x0A, value.encode("utf-8"))
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _field(0x3A, value)
    if isinstance(value, Sequence):
        return _field(0x2A, b"".join(_field(0x0A, _any_value(item)) for item in value))
    if isinstance(value, Mapping):
        return _field(0x32, b"".join(_field(0x0A, _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    return _string(0x0A, key) + _field(0x12, _any_value(value))


def _plain(attributes: Any) -> Any:
    """The dict behind the SDK's BoundedAttributes (same items, same order), read without its
    Mapping-ABC iteration (a lookup per key); any other mapping as it is."""
    inner = getattr(attributes, "_dict", None)
    return inner if type(inner) is dict else attributes


def _attributes(tag: int, attributes: Mapping[str, Any] | None) -> bytes:
    """Repeated KeyValue fields; a pair of plain values is encoded once and cached."""
    if not attributes:
        return b""
    parts = []
    for key, value in _plain(attributes).items():
        if isinstance(value, (str, bool, int)):  # not float: 0.0 == -0.0, their bytes differ
            cache_key = (tag, key, type(value), value)
            encoded = _key_values.get(cache_key)
            if encoded is None:
                if len(_key_values) >= CACHE_SIZE:
                    _key_values.clear()
                encoded = _key_values[cache_key] = _field(tag, _key_value(key, value))
            parts.append(encoded)
        else:
            parts.append(_field(tag, _key_value(key, value)))
    return b"".join(parts)


def _flags(parent: Any) -> bytes:
    flags = HAS_IS_REMOTE | (IS_REMOTE if parent is not None and parent.is_remote else 0)
    return b"\x85\x01" + _pack_fixed32(flags)  # field 16, fixed32


def _uint32(tag: int, value: int) -> bytes:
    return bytes((tag,)) + _varint(value) if value else b""


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None
    parts = [b"\x0a\x10" + context.trace_id.to_bytes(16, "big"), b"\x12\x08" + context.span_id.to_bytes(8, "big")]
    if context.trace_state is not None:
        parts.append(_string(0x1A, ",".join(f"{k}={v}" for k, v in context.trace_state.items())))
    parent = span.parent
    if parent:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    parts.append(_string(0x2A, span.name))
    parts.append(b"\x30" + _varint(span.kind.value + 1))  # SpanKind.INTERNAL (0) is OTLP's 1
    if span.start_time:
        parts.append(b"\x39" + _pack_fixed64(span.start_time))
    if span.end_time:
        parts.append(b"\x41" + _pack_fixed64(span.end_time))
    # The span's own BoundedAttributes rather than the read-only view `attributes` wraps it in.
    parts.append(_attributes(0x4A, getattr(span, "_attributes", None) or span.attributes))
    parts.append(_uint32(0x50, span.dropped_attributes))
    for event in span.events:
        fields = (b"\x09" + _pack_fixed64(event.timestamp) if event.timestamp else b"") + _string(0x12, event.name)
        fields += _attributes(0x1A, event.attributes) + _uint32(0x20, event.dropped_attributes)
        parts.append(_field(0x5A, fields))
    parts.append(_uint32(0x60, span.dropped_events))
    for link in span.links:
        fields = b"\x0a\x10" + link.context.trace_id.to_bytes(16, "big") + b"\x12\x08" + link.context.span_id.to_bytes(8, "big")
        fields += _attributes(0x22, link.attributes) + _uint32(0x28, link.dropped_attributes)
        fields += b"\x35" + _pack_fixed32(HAS_IS_REMOTE | (IS_REMOTE if link.context.is_remote else 0))
        parts.append(_field(0x6A, fields))
    parts.append(_uint32(0x70, span.dropped_links))
    status = span.status
    if status is not None:
        code = status.status_code.value
        parts.append(_field(0x7A, _string(0x12, status.description or "") + (b"\x18" + _varint(code) if code else b"")))
    parts.append(_flags(parent))
    return b"".join(parts)


_resources: dict[int, tuple[Any, bytes]] = {}
"""id(resource) -> (resource, its Resource message): a provider has one resource for life."""


def _resource(resource: Any) -> bytes:
    cached = _resources.get(id(resource))
    if cached is None or cached[0] is not resource:
        if len(_resources) >= 64:
            _resources.clear()
        cached = _resources[id(resource)] = (resource, _attributes(0x0A, resource.attributes))
    return cached[1]


def _scope(scope: Any) -> bytes:
    if scope is None:
        return b""
    return _string(0x0A, scope.name) + _string(0x12, scope.version or "") + _attributes(0x1A, scope.attributes)


def encode_bytes(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialised ExportTraceServiceRequest of `spans`."""
    # Grouped by resource and scope as the SDK groups them (by equality, in order of first
    # appearance); each distinct object's hash is taken once (a Resource hashes its JSON).
    grouped: dict[Any, dict[Any, list[bytes]]] = {}
    canonical: dict[int, Any] = {}
    equal: dict[Any, Any] = {}
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope or None
        resource = canonical.get(id(resource)) or canonical.setdefault(id(resource), equal.setdefault(resource, resource))
        scope = canonical.get(id(scope)) or canonical.setdefault(id(scope), equal.setdefault(scope, scope))
        grouped.setdefault(id(resource), {}).setdefault(id(scope), []).append(_span(span))
    del equal
    resource_spans = []
    for resource_id, scopes in grouped.items():
        resource = canonical[resource_id]
        fields = _field(0x0A, _resource(resource))
        for scope_id, encoded in scopes.items():
            scope = canonical[scope_id]
            scope_fields = _field(0x0A, _scope(scope)) + b"".join(_field(0x12, one) for one in encoded)
            scope_fields += _string(0x1A, scope.schema_url if scope else "")
            fields += _field(0x12, scope_fields)
        fields += _string(0x1A, resource.schema_url)
        resource_spans.append(_field(0x0A, fields))
    return b"".join(resource_spans)


def encode_spans(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """What the SDK's `encode_spans` returns, made faster; the SDK's own for what this cannot."""
    try:
        return ExportTraceServiceRequest.FromString(encode_bytes(spans))
    except Exception as exc:  # an unexpected value: the SDK's encoder decides (and logs) what to do
        logger.debug("fast OTLP encoding failed (%s); using the SDK's", exc)
        return sdk_encode_spans(spans)


class Serialized:
    """An encoded request for the OTLP/HTTP exporter, which only serialises what `encode_spans`
    gives it: the bytes as they are, without a parse and a serialisation in between."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    def SerializePartialToString(self) -> bytes:
        return self.data

    SerializeToString = SerializePartialToString


def encode_serialized(spans: Sequence[ReadableSpan]) -> Any:
    """`encode_spans` for the OTLP/HTTP exporter."""
    try:
        return Serialized(encode_bytes(spans))
    except Exception as exc:
        logger.debug("fast OTLP encoding failed (%s); using the SDK's", exc)
        return sdk_encode_spans(spans)


def install() -> None:
    """Make the OTLP span exporters (HTTP and gRPC) encode with this module: the gRPC one takes
    the message (`encode_spans`), the HTTP one only its bytes (`encode_serialized`)."""
    import importlib

    for name, encoder in (("opentelemetry.exporter.otlp.proto.http.trace_exporter", encode_serialized),
                          ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", encode_spans)):  # fmt: skip
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(module, "encode_spans", None) is sdk_encode_spans:
            module.encode_spans = encoder  # type: ignore[attr-defined]


__all__ = ["Serialized", "encode_bytes", "encode_serialized", "encode_spans", "install"]
