"""An HTTP server of `kubemind up`'s own (the activator, the JWT verifier, the Kubernetes API):
http.server's threading server on 127.0.0.1, served by a daemon thread, closed by `stop`."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class BackgroundHttpServer:
    def __init__(self, handler: type[BaseHTTPRequestHandler], name: str, host: str = "127.0.0.1", port: int = 0):
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True  # a held keep-alive connection never blocks the exit
        self.port = int(self.server.server_address[1])
        """The port bound (a free one when `port` is 0)."""
        self._thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)

    def start(self) -> BackgroundHttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
