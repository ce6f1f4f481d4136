"""What the REST listener does before a request reaches the pipeline: bounded waits and bodies.

uvicorn holds a connection that never finishes its request line and headers forever, and gives
a body that drips in no deadline of its own: `guarded_protocol` adds a header-read timeout and a
body-read deadline (both answered 408, the connection closed). `ContentEncodingMiddleware`
accepts `Content-Encoding: gzip` with the decompressed size held to the body limit (a 64 kB
gzip bomb must not become 64 GB), and answers any other encoding 415 instead of a misleading
"malformed JSON" 400.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubemind.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

SUPPORTED_ENCODINGS = (b"gzip", b"x-gzip")
_CHUNK = 64 * 1024


def _timeout_reply(message: str) -> bytes:
    body = orjson.dumps({"error": message})
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def guarded_protocol(header_timeout: float, body_timeout: float) -> type[asyncio.Protocol] | str:
    """uvicorn's httptools protocol with a header-read timeout and a body-read deadline.

    The header timer runs from a request's first byte to the end of its headers (and, on a new
    connection, from the accept: a connection that never sends a byte is not held forever
    either, though it gets the keep-alive time to start); the body deadline runs from the end
    of the headers to the end of the body. Between requests uvicorn's keep-alive timeout applies.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is installed with uvicorn here
        return "auto"

    class GuardedProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._guard: asyncio.TimerHandle | None = None
            self._reading_headers = False

        def _arm(self, seconds: float, callback: Any) -> None:
            self._disarm()
            self._guard = self.loop.call_later(seconds, callback)

        def _disarm(self) -> None:
            if self._guard is not None:
                self._guard.cancel()
                self._guard = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(max(header_timeout, self.timeout_keep_alive), self._headers_timed_out)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._reading_headers = True
            self._arm(header_timeout, self._headers_timed_out)

        def on_headers_complete(self) -> None:
            self._reading_headers = False
            self._arm(body_timeout, self._body_timed_out)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def _headers_timed_out(self) -> None:
            self._guard = None
            if self.transport.is_closing():
                return
            if self._reading_headers:
                self.transport.write(_timeout_reply(f"request headers not received within {header_timeout:g} s"))
            self.transport.close()

        def _body_timed_out(self) -> None:
            self._guard = None
            if self.transport.is_closing():
                return
            cycle = self.cycle
            if cycle is not None and not cycle.response_started:
                self.transport.write(_timeout_reply(f"request body not received within {body_timeout:g} s"))
            if cycle is not None:
                # The endpoint waiting for the rest of the body sees a disconnect and gives up.
                cycle.disconnected = True
                cycle.message_event.set()
            self.transport.close()

    return GuardedProtocol


class ContentEncodingMiddleware:
    """Decompresses gzip request bodies (at most `limit` bytes out); other encodings are 415.

    Errors are raised from `receive`, so the endpoint's pipeline answers them in its route's
    error shape, as it does the body limit's 413.
    """

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        encoding = b""
        for key, value in scope["headers"]:
            if key == b"content-encoding":
                encoding = value.strip().lower()
        if encoding in (b"", b"identity"):
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")]
        scope = dict(scope, headers=headers)
        if encoding not in SUPPORTED_ENCODINGS:
            await self.app(scope, self._refuse(encoding), send)
            return
        await self.app(scope, self._gunzip(receive), send)

    @staticmethod
    def _refuse(encoding: bytes) -> Receive:
        async def receive() -> Message:
            shown = encoding.decode("latin-1")[:40]
            raise UnsupportedMediaType(f"Content-Encoding {shown!r} is not supported (send identity or gzip)")

        return receive

    def _gunzip(self, receive: Receive) -> Receive:
        done = False

        async def gunzipping_receive() -> Message:
            nonlocal done
            if done:
                return await receive()
            compressed = bytearray()
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return message
                compressed += message.get("body", b"")
                if not message.get("more_body", False):
                    break
            done = True
            body = await asyncio.get_running_loop().run_in_executor(None, self._decompress, bytes(compressed))
            return {"type": "http.request", "body": body, "more_body": False}

        return gunzipping_receive

    def _decompress(self, data: bytes) -> bytes:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = bytearray()
        pending = data
        try:
            while pending and not inflater.eof:
                # max_length bounds each step: the output never grows past the limit + 1 chunk.
                out += inflater.decompress(pending, _CHUNK)
                pending = inflater.unconsumed_tail
                if len(out) > self.limit:
                    raise PayloadTooLarge(f"request body is over the {self.limit}-byte limit once decompressed")
        except zlib.error as exc:
            raise InvalidInput(f"request body: not valid gzip data ({exc})") from None
        if not inflater.eof:
            raise InvalidInput("request body: gzip data is truncated")
        return bytes(out)


__all__ = ["ContentEncodingMiddleware", "guarded_protocol"]
