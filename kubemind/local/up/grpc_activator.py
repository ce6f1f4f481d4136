"""The gRPC side of scale from zero, as a child process of `kubemind up`.

nginx sends a scaled-to-zero revision's gRPC calls here (REVISION_HEADER names the revision).
Each call asks the activator in `up` to wake the revision (it holds the request until a replica
is ready, logging the cold start), then is forwarded to that replica. Messages pass as raw
bytes: every method is handled as stream-stream, the same HTTP/2 exchange as a unary call, so
no protobuf of the services behind it is needed. A process of its own because `up` forks every
replica and nginx, and a process with gRPC threads must not fork.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx

from kubemind.local.up.activator import REVISION_HEADER

# Metadata that belongs to the connection or to gRPC itself, never forwarded.
NOT_FORWARDED = (":", "grpc-")


class Forwarder(grpc.GenericRpcHandler):
    def __init__(self, wake_url: str, timeout: float):
        self.wake_url = wake_url
        self.timeout = timeout
        self._lock = threading.Lock()
        self._channels: dict[int, grpc.Channel] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = str(handler_call_details.method)
        return grpc.stream_stream_rpc_method_handler(lambda requests, context: self._forward(method, requests, context))

    def _wake(self, revision: str) -> int | None:
        try:
            answer = httpx.get(self.wake_url, headers={REVISION_HEADER: revision}, timeout=self.timeout)
        except httpx.HTTPError:
            return None
        return int(answer.json()["grpc_port"]) if answer.status_code == 200 else None

    def _forward(self, method: str, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        metadata = [(str(key), value) for key, value in context.invocation_metadata()]
        revision = next((str(value) for key, value in metadata if key == REVISION_HEADER), "")
        port = self._wake(revision) if revision else None
        if port is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{revision or 'no revision'} did not become ready;"
                          " see kubemind up's output")
        forwarded = [(key, value) for key, value in metadata
                     if key != REVISION_HEADER and key != "user-agent" and not key.startswith(NOT_FORWARDED)]
        remaining = context.time_remaining()
        call = self._channel(int(port or 0)).stream_stream(method)
        try:
            responses = call(requests, metadata=forwarded, timeout=remaining if remaining < self.timeout else None)
            context.send_initial_metadata(responses.initial_metadata() or ())
            yield from responses
            context.set_trailing_metadata(responses.trailing_metadata() or ())
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details() or "")

    def _channel(self, port: int) -> grpc.Channel:
        with self._lock:
            if port not in self._channels:
                self._channels[port] = grpc.insecure_channel(f"127.0.0.1:{port}")
            return self._channels[port]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--wake_url", required=True)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    # Each waiting call holds a thread, as each waiting REST request does in the activator.
    server = grpc.server(ThreadPoolExecutor(max_workers=64), handlers=[Forwarder(args.wake_url, args.timeout)])
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
