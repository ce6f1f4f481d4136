"""Cluster Service names in a spec's args, and the one port per component that takes HTTP/1.1
and gRPC alike (kubemind/local/up/cluster_ports.py)."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from kubemind.local.up.cluster_ports import (
    HTTP2_PREFACE,
    ClusterPorts,
    cluster_hosts,
    replace_cluster_hosts,
)


def test_cluster_service_names_are_found_and_replaced_with_their_port() -> None:
    arg = "--llm_url=http://rag-predictor.kubemind.svc.cluster.local/openai"
    assert cluster_hosts(arg) == [("rag-predictor", "kubemind")]
    local = {("rag-predictor", "kubemind"): "127.0.0.1:4000", ("embedder-predictor", "kubemind"): "127.0.0.1:4001"}
    assert replace_cluster_hosts(arg, lambda n, ns: local.get((n, ns))) == "--llm_url=http://127.0.0.1:4000/openai"
    # the Service's port goes with its name; the short form is a Service name too
    assert replace_cluster_hosts("embedder-predictor.kubemind.svc.cluster.local:80", lambda n, ns: local.get((n, ns))) \
        == "127.0.0.1:4001"
    assert replace_cluster_hosts("embedder-predictor.kubemind.svc:9000", lambda n, ns: local.get((n, ns))) == "127.0.0.1:4001"
    # a Service `up` does not run, and names that only look alike, stay as written
    assert replace_cluster_hosts("other.kubemind.svc.cluster.local:80", lambda n, ns: local.get((n, ns))) \
        == "other.kubemind.svc.cluster.local:80"
    assert cluster_hosts("www.example.com") == [] and cluster_hosts("a.b.svc.cluster.localhost") == []


class _Named(socketserver.BaseRequestHandler):
    """Answers with the server's name and every byte it read, once the client half-closes."""

    def handle(self) -> None:
        received = b""
        while chunk := self.request.recv(65536):
            received += chunk
        self.request.sendall(self.server.name + b":" + received)  # type: ignore[attr-defined]


@pytest.fixture()
def rest_and_grpc() -> Iterator[tuple[int, int]]:
    servers = []
    for name in (b"rest", b"grpc"):
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Named)
        server.daemon_threads = True
        server.name = name  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield servers[0].server_address[1], servers[1].server_address[1]
    for server in servers:
        server.shutdown()
        server.server_close()


def _send(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def test_one_port_sends_http2_to_grpc_and_the_rest_to_rest_byte_for_byte(rest_and_grpc: tuple[int, int]) -> None:
    running = {"ns/svc/predictor": rest_and_grpc}
    ports = ClusterPorts(lambda key: running.get(key))
    try:
        port = ports.port("ns/svc/predictor")
        assert ports.port("ns/svc/predictor") == port  # stable: args written once keep working
        request = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 200_000
        assert _send(port, request) == b"rest:" + request
        frames = HTTP2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        assert _send(port, frames) == b"grpc:" + frames
        # a client that sends fewer bytes than the preface is still answered (by REST)
        assert _send(port, b"PRI") == b"rest:PRI"
        # a component that stopped running: the connection is closed, nothing hangs
        running.clear()
        assert _send(port, b"GET / HTTP/1.1\r\n\r\n") == b""
    finally:
        ports.stop()
