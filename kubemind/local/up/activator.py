"""Scale from zero: the stand-in for Knative's activator.

While a revision with `minReplicas: 0` has no replica, the gateway sends its REST and gRPC
requests here. The first one asks the runner (on the main thread, which owns every child
process) for a replica, waits until that replica is ready, and forwards the request to it; the
time from that request to ready is the cold start, logged. Once the replica is ready the runner
reloads nginx so that requests go straight to it.

gRPC calls go to a child process (grpc_activator.py: `up` itself must hold no gRPC threads,
since it forks every replica and nginx), which asks this activator to wake the revision at
WAKE_PATH and then forwards the call.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx

from kubemind.local.up.background_http import BackgroundHttpServer
from kubemind.processes import die_with_parent, free_port

REVISION_HEADER = "x-kubemind-activate"
# Answers {"grpc_port": P} once the revision named in REVISION_HEADER has a ready replica.
WAKE_PATH = "/.kubemind/wake"
# Hop-by-hop headers are the connection's, not the request's: never forwarded.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-connection", "content-length", "host"}


def read_request_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request's body, sent with a content-length or chunked."""
    if handler.headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while (size := int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        handler.rfile.readline()
        return b"".join(chunks)
    return handler.rfile.read(int(handler.headers.get("content-length") or 0))


class Activator:
    def __init__(self, report: Callable[[str], None], timeout: float = 600.0, grpc_log: Path | None = None):
        self.report = report
        self.timeout = timeout
        self._lock = threading.Lock()
        self._wanted: set[str] = set()
        self._ready: dict[str, tuple[int, int]] = {}  # revision -> (REST, gRPC) ports of a ready replica
        self._failed: set[str] = set()  # revisions whose replica could not be started
        self._server = BackgroundHttpServer(self._handler(), "activator").start()
        self.port = self._server.port
        self.grpc_port = free_port()
        log = open(grpc_log or "/dev/null", "ab")  # noqa: SIM115 - the child holds it
        self._grpc = subprocess.Popen(
            [sys.executable, "-m", "kubemind.local.up.grpc_activator", "--port", str(self.grpc_port),
             "--wake_url", f"http://127.0.0.1:{self.port}{WAKE_PATH}", "--timeout", str(timeout)],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent())
        log.close()

    # -- the runner's side (main thread) -----------------------------------------------------
    def wanted(self) -> set[str]:
        """Revisions a request is waiting for; the runner starts a replica for each."""
        with self._lock:
            return set(self._wanted)

    def mark_ready(self, revision: str, http_port: int, grpc_port: int) -> None:
        with self._lock:
            self._wanted.discard(revision)
            self._ready[revision] = (http_port, grpc_port)

    def mark_cold(self, revision: str) -> None:
        """Scaled back to zero: the next request wakes it again."""
        with self._lock:
            self._ready.pop(revision, None)

    def mark_failed(self, revision: str) -> None:
        """The waiting requests get 503 now instead of at the timeout."""
        with self._lock:
            self._wanted.discard(revision)
            self._failed.add(revision)

    def stop(self) -> None:
        self._server.stop()
        self._grpc.terminate()
        try:
            self._grpc.wait(10)
        except subprocess.TimeoutExpired:
            self._grpc.kill()
            self._grpc.wait(5)

    @property
    def pids(self) -> list[int]:
        """Its child process (the gRPC forwarder), for `kubemind down`."""
        return [self._grpc.pid] if self._grpc.poll() is None else []

    # -- the request's side (one thread per request) -----------------------------------------
    def _wait_for(self, revision: str) -> tuple[int, int] | None:
        started = time.monotonic()
        with self._lock:
            cold = revision not in self._ready and revision not in self._wanted
            if revision not in self._ready:
                self._wanted.add(revision)
                self._failed.discard(revision)
        while time.monotonic() - started < self.timeout:
            with self._lock:
                port = self._ready.get(revision)
                failed = revision in self._failed
            if port is not None:
                if cold:
                    self.report(f"{revision}: cold start {time.monotonic() - started:.1f}s (first request to ready)")
                return port
            if failed:
                return None
            time.sleep(0.05)
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        activator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass  # nginx's access log has every request

            def _forward(self) -> None:
                revision = self.headers.get(REVISION_HEADER, "")
                body = read_request_body(self)
                ports = activator._wait_for(revision) if revision else None
                if ports is not None and self.path == WAKE_PATH:
                    self._answer(200, json.dumps({"grpc_port": ports[1]}).encode(), {"content-type": "application/json"})
                    return
                if ports is None:
                    self._answer(503, f'{{"error": "{revision or "no revision"} did not become ready;'
                                 f' see kubemind up\'s output"}}'.encode(), {})
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in HOP_BY_HOP and k.lower() != REVISION_HEADER}
                try:
                    reply = httpx.request(self.command, f"http://127.0.0.1:{ports[0]}{self.path}", headers=headers,
                                          content=body, timeout=activator.timeout)
                except httpx.HTTPError as exc:
                    self._answer(502, f'{{"error": "replica unreachable: {exc}"}}'.encode(), {})
                    return
                kept = {k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP | {"content-encoding"}}
                self._answer(reply.status_code, reply.content, kept)

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    # The caller gave up during the cold start (its own deadline): nothing to
                    # answer, and no traceback in `up`'s output for it.
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward

        return Handler

