"""A real OTLP trace receiver for tests: the collector's wire protocol on both transports.

It serves opentelemetry-proto's gRPC `TraceService/Export` and OTLP/HTTP's `POST /v1/traces`
(protobuf bodies) on loopback ports chosen at run time, keeps every span it receives, and
answers the way a collector does. `env()` gives the OTEL_* variables that point a kubemind
process at it. Reusable for any trace test (a RAG request's trace, say):

    def test_rag_trace(otlp_receiver: ReceiverProcess) -> None:   # the fixture below
        start servers with env=otlp_receiver.env("rag", protocol="grpc")
        ... send one request ...
        spans = otlp_receiver.wait_for_trace(lambda spans: {"step a", "step b"} <= names(spans))
        print(render_tree(spans))
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    service: str
    attributes: dict[str, Any]
    events: tuple[str, ...]
    event_ns: tuple[int, ...]
    """each event's time"""
    links: tuple[str, ...]
    """span ids this span links to"""
    start_ns: int
    end_ns: int
    status_code: int
    transport: str = field(compare=False)
    """grpc or http: how the exporter sent it"""


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, which) if which else None


def _spans(request: trace_service_pb2.ExportTraceServiceRequest, transport: str) -> list[ReceivedSpan]:
    received = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                received.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=KINDS.get(span.kind, str(span.kind)),
                        service=str(resource.get("service.name", "")),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        events=tuple(event.name for event in span.events),
                        event_ns=tuple(event.time_unix_nano for event in span.events),
                        links=tuple(link.span_id.hex() for link in span.links),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status_code=span.status.code,
                        transport=transport,
                    )
                )
    return received


class _Spans:
    """Pointing processes at a receiver and waiting for what it received."""

    grpc_port: int
    http_port: int

    def spans(self) -> list[ReceivedSpan]:
        raise NotImplementedError

    def env(self, service: str, protocol: str = "grpc") -> dict[str, str]:
        """OTEL_* variables for a kubemind process exporting here (short batch delay: tests
        wait for spans, they do not sleep)."""
        port = self.grpc_port if protocol == "grpc" else self.http_port
        return {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_SERVICE_NAME": service,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }

    def wait_for(self, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 60.0) -> list[ReceivedSpan]:
        """Every span received, once `done(spans)` holds (AssertionError listing them if never)."""
        deadline = time.monotonic() + timeout
        while not done(spans := self.spans()):
            if time.monotonic() > deadline:
                raise AssertionError(f"spans never complete within {timeout} s; got:\n" + render_tree(spans))
            time.sleep(0.1)
        return spans

    def wait_for_trace(self, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 60.0) -> list[ReceivedSpan]:
        """The spans of the first trace for which `done` holds."""
        found: list[list[ReceivedSpan]] = []

        def complete(spans: list[ReceivedSpan]) -> bool:
            for trace in by_trace(spans).values():
                if done(trace):
                    found.append(trace)
                    return True
            return False

        self.wait_for(complete, timeout)
        return found[0]


class OTLPReceiver(_Spans, trace_service_pb2_grpc.TraceServiceServicer):
    """The receiver itself (run it in a process of its own: `ReceiverProcess`)."""

    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._changed = threading.Condition()
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self.grpc_port = 0
        self.http_port = 0

    # -- the two transports -----------------------------------------------------------------------
    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any) -> Any:
        self._add(_spans(request, "grpc"))
        return trace_service_pb2.ExportTraceServiceResponse()

    def _add(self, spans: list[ReceivedSpan]) -> None:
        with self._changed:
            self._spans += spans
            self._changed.notify_all()

    def start(self) -> OTLPReceiver:
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._grpc)
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path != "/v1/traces" or self.headers.get("content-type") != "application/x-protobuf":
                    self.send_response(404 if self.path != "/v1/traces" else 415)
                    self.end_headers()
                    return
                receiver._add(_spans(trace_service_pb2.ExportTraceServiceRequest.FromString(body), "http"))
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def do_GET(self) -> None:
                """What arrived so far, as JSON (how a test process reads a receiver process)."""
                reply = json.dumps([dataclasses.asdict(span) for span in receiver.spans()]).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def spans(self) -> list[ReceivedSpan]:
        with self._changed:
            return list(self._spans)


class ReceiverProcess(_Spans):
    """`python -m tests.otlp_receiver` as a child process, read over its HTTP port.

    A process of its own because a gRPC server in the test process makes the fork of every
    server the test starts afterwards unsafe (gRPC's fork handlers are skipped while its threads
    run, and a child can abort in its poller before it execs).
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.otlp_receiver"], stdout=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parents[1], env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if len(line) != 2:
            self.stop()
            raise RuntimeError("the OTLP receiver did not start")
        self.grpc_port, self.http_port = int(line[0]), int(line[1])

    def spans(self) -> list[ReceivedSpan]:
        import httpx

        reply = httpx.get(f"http://127.0.0.1:{self.http_port}/spans", timeout=10)
        return [ReceivedSpan(**{**item, **{key: tuple(item[key]) for key in ("events", "event_ns", "links")}}) for item in reply.json()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def by_trace(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    traces: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    return traces


def names(spans: list[ReceivedSpan]) -> set[str]:
    return {span.name for span in spans}


def roots(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    """Spans whose parent is not among `spans`: exactly one for a connected trace."""
    ids = {span.span_id for span in spans}
    return [span for span in spans if span.parent_span_id not in ids]


def render_tree(spans: list[ReceivedSpan]) -> str:
    """The spans as indented trees, one per trace (for failure messages and reports): each line
    a span's name, kind, service and duration, its events and links; children by start time."""
    children: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        children.setdefault(span.parent_span_id, []).append(span)
    lines: list[str] = []

    def walk(span: ReceivedSpan, depth: int) -> None:
        events = f" events={list(span.events)}" if span.events else ""
        links = f" links={len(span.links)}" if span.links else ""
        took = f" {(span.end_ns - span.start_ns) / 1e6:.1f} ms" if span.end_ns >= span.start_ns else ""
        lines.append(f"{'  ' * depth}{span.name} [{span.kind}, {span.service}]{took}{events}{links}")
        for child in sorted(children.get(span.span_id, []), key=lambda s: s.start_ns):
            walk(child, depth + 1)

    for trace_id, trace in by_trace(spans).items():
        lines.append(f"trace {trace_id}")
        for root in sorted(roots(trace), key=lambda s: s.start_ns):
            walk(root, 1)
    return "\n".join(lines)


@pytest.fixture
def otlp_receiver() -> Iterator[ReceiverProcess]:
    """A running receiver process, stopped after the test."""
    receiver = ReceiverProcess()
    try:
        yield receiver
    finally:
        receiver.stop()


def main() -> None:
    receiver = OTLPReceiver().start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(receiver.grpc_port, receiver.http_port, flush=True)
    stop.wait()
    receiver.stop()


if __name__ == "__main__":
    main()
