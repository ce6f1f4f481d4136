"""The receiving end of bench_observability, at as little CPU as it can: it reads what arrives,
counts it, drops it and answers, so the benchmark measures the sending server's cost rather
than its receiver's (which on a cluster runs on other machines).

    python benchmarks/event_sink.py HTTP_PORT [GRPC_PORT]

HTTP (a raw asyncio protocol, no HTTP framework; bodies are skipped as they arrive, never
buffered): `POST /v1/traces` is an OTLP/HTTP collector (200, an empty protobuf
ExportTraceServiceResponse); any other POST a CloudEvents sink (202). `GET /health` answers 200
once it listens; `GET /stats` the requests and body bytes received so far, by path, as JSON.
GRPC_PORT: an OTLP/gRPC collector too (TraceService/Export, the request never deserialised,
counted under `grpc`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from concurrent import futures
from typing import Any

ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
EXPORTED = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"
TRACES_PATH = b"/v1/traces"

STATS: dict[str, list[int]] = {}
"""path -> [requests, body bytes]"""
_stats_lock = threading.Lock()


def count(path: str, length: int) -> None:
    with _stats_lock:
        entry = STATS.setdefault(path, [0, 0])
        entry[0] += 1
        entry[1] += length


class Sink(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.head = b""
        self.skip = 0
        """Body bytes of the current request still to arrive (read and dropped)."""

    def data_received(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.skip:
                taken = min(self.skip, len(view))
                self.skip -= taken
                view = view[taken:]
                continue
            self.head += bytes(view)
            view = memoryview(b"")
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, rest = self.head[:end], self.head[end + 4 :]
            self.head = b""
            self.skip = self._answer(head)
            view = memoryview(rest)

    def _answer(self, head: bytes) -> int:
        """Answer the request whose head this is; its body's length (to skip)."""
        first, _, fields = head.partition(b"\r\n")
        method, _, rest = first.partition(b" ")
        path = rest.partition(b" ")[0]
        lowered = fields.lower()
        start = lowered.find(b"content-length:")
        length = int(lowered[start + 15 :].split(b"\r\n", 1)[0]) if start >= 0 else 0
        if method == b"POST":
            count(path.decode("latin-1"), length)
            self.transport.write(EXPORTED if path == TRACES_PATH else ACCEPTED)
        elif path == b"/stats":
            with _stats_lock:
                body = json.dumps(STATS).encode()
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        else:
            self.transport.write(OK)
        return length


def serve_grpc(port: int) -> Any:
    """An OTLP/gRPC TraceService whose Export reads the request as bytes and answers an empty
    ExportTraceServiceResponse (no protobuf parsing)."""
    import grpc

    def export(request: bytes, context: Any) -> bytes:
        count("grpc", len(request))
        return b""

    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": grpc.unary_unary_rpc_method_handler(export)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


async def main(port: int, grpc_port: int | None) -> None:
    grpc_server = serve_grpc(grpc_port) if grpc_port else None
    server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", port)
    try:
        async with server:
            await server.serve_forever()
    finally:
        if grpc_server is not None:
            grpc_server.stop(None)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None))
