"""Cluster Service addresses, on one machine.

On a cluster a component is reached at `NAME-predictor.NS.svc.cluster.local:80`, and that one
port takes HTTP/1.1 and gRPC (h2c) alike (Knative's ingress tells them apart). Locally the
gateway has one REST and one gRPC port per component (nginx 1.22 cannot serve both on one
cleartext port), so each component addressed by another's args also gets a *cluster port*
here: the first bytes of a connection decide where it goes (the HTTP/2 client preface → the
component's gRPC port on the gateway, anything else → its REST port) and the bytes are then
copied both ways unchanged. A spec's `http://rag-predictor.kubemind.svc.cluster.local` and
`embedder-predictor.kubemind.svc.cluster.local:80` thus work as written, whatever protocol the
caller speaks, and still pass the gateway (its routes, canary split and activator).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future

# What a connection starts with when it speaks HTTP/2 without TLS (RFC 9113 §3.4).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
COPY_CHUNK = 64 * 1024
# A host name of a cluster Service: NAME.NAMESPACE.svc[.cluster.local], with an optional port.
CLUSTER_HOST = re.compile(
    r"(?P<name>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
    r"\.svc(\.cluster\.local)?(:(?P<port>[0-9]+))?(?![-a-z0-9.])"
)

GatewayPorts = Callable[[str], "tuple[int, int] | None"]
"""A component key -> its (REST, gRPC) ports on the gateway now; None when it does not run."""


def cluster_hosts(text: str) -> list[tuple[str, str]]:
    """The (name, namespace) of each cluster Service host named in `text`."""
    return [(m["name"], m["namespace"]) for m in CLUSTER_HOST.finditer(text)]


def replace_cluster_hosts(text: str, address: Callable[[str, str], str | None]) -> str:
    """Each cluster Service host (and its port) in `text` replaced by `address(name, namespace)`,
    left as it is where that answers None."""

    def local(match: re.Match[str]) -> str:
        return address(match["name"], match["namespace"]) or match[0]

    return CLUSTER_HOST.sub(local, text)


class ClusterPorts:
    """One listening port per component key, all served by one event loop in a daemon thread."""

    def __init__(self, gateway_ports: GatewayPorts):
        self.gateway_ports = gateway_ports
        self.ports: dict[str, int] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cluster-ports", daemon=True)
        self._thread.start()

    def port(self, key: str) -> int:
        """The component's cluster port, opened on first use (stable while `up` runs)."""
        if key not in self.ports:
            future: Future[int] = asyncio.run_coroutine_threadsafe(self._listen(key), self._loop)
            self.ports[key] = future.result(timeout=10)
        return self.ports[key]

    async def _listen(self, key: str) -> int:
        server = await asyncio.start_server(
            lambda reader, writer: self._relay(key, reader, writer), "127.0.0.1", 0)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def _relay(self, key: str, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            first = await _read_prefix(client_reader)
            ports = self.gateway_ports(key)
            if not first or ports is None:
                # nothing sent, or the component is gone: closed, as a missing Service's would be
                client_writer.close()
                return
            http2 = first == HTTP2_PREFACE
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", ports[1] if http2 else ports[0])
        except OSError:
            client_writer.close()
            return
        try:
            upstream_writer.write(first)
            await asyncio.gather(_copy(client_reader, upstream_writer), _copy(upstream_reader, client_writer))
        finally:
            for writer in (upstream_writer, client_writer):
                writer.close()

    def stop(self) -> None:
        async def close() -> None:
            for server in self._servers:
                server.close()
            # Connections still open end here, while the loop runs (not as pending tasks of a
            # closed loop at exit).
            relays = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in relays:
                task.cancel()
            await asyncio.gather(*relays, return_exceptions=True)

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


async def _read_prefix(reader: asyncio.StreamReader) -> bytes:
    """Enough of the first bytes to tell HTTP/2's preface from anything else."""
    data = b""
    while len(data) < len(HTTP2_PREFACE):
        chunk = await reader.read(len(HTTP2_PREFACE) - len(data))
        if not chunk:
            break
        data += chunk
        if not HTTP2_PREFACE.startswith(data):
            break  # not HTTP/2: no need to wait for more
    return data


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(COPY_CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: the other direction may still be answering
    except (ConnectionError, OSError):
        writer.close()
