"""The one request pipeline every route passes through (design principle 13).

v2 REST, v2 gRPC, OpenAI, the OIP generate extension, v1 and any route a model declares get the
same steps, in one place: the request record, the trace-header allow-list, `x-request-id`
(echoed, generated when absent), model lookup and version resolution, readiness (asking the
backend), a deadline, the error table (in the body shape of the route's declared protocol),
Prometheus metrics and one access-log line.

Models never mount raw routes: they declare `Route`s (`KubemindModel.routes()`), and the server
mounts each declared path once, dispatching to the model the request names.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from kserve.model import BaseKServeModel
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from kubemind.codecs import parse_json_body
from kubemind.errors import (
    OPENAI,
    V2,
    BackendTimeout,
    InvalidInput,
    ModelNotReady,
    NotImplementedByModel,
    ServerNotReady,
    as_kubemind_error,
    error_body,
)
from kubemind.payload_logger import PayloadLogger
from kubemind.protocol.service import InferenceService
from kubemind.protocol.sse import SSE_DONE, encode_event
from kubemind.settings import ComponentSettings
from kubemind.telemetry import (
    REQUEST_ID,
    RequestRecord,
    ServerMetrics,
    finish_request,
    propagated_headers,
)
from kubemind.tracing import end_request_span, start_request_span


@dataclass
class RouteCall:
    """What a declared route's handler gets: the resolved model and the parsed request."""

    model: BaseKServeModel
    version: str
    body: Any
    """The JSON body (None when the request has none)."""
    request: Request
    headers: dict[str, str]
    """The allow-listed trace headers, with `x-request-id`: forward these downstream."""
    record: RequestRecord


@dataclass
class EventStream:
    """A server-sent-event reply. Items are dicts (sent as `data: <json>`) or preformatted SSE
    strings (OpenAI's `data: [DONE]`). An error after the first byte becomes a last event in
    the route's protocol shape; the stream has a total deadline and an idle timeout."""

    events: AsyncIterator[dict[str, Any] | str]


STREAM_CONTENT_TYPE = "text/event-stream"


RouteResult = dict[str, Any] | list[Any] | BaseModel | Response | EventStream
RouteHandler = Callable[[RouteCall], Awaitable[RouteResult]]


@dataclass(frozen=True)
class Route:
    """A route a model declares; the server mounts it on the one pipeline."""

    method: str
    path: str
    """A Starlette path; `{model_name}` (and `{model_version}`) pick the model from the path."""
    name: str
    """The endpoint label in metrics and the access log."""
    handler: RouteHandler
    protocol: str = V2
    """Which error body shape the route answers with (kubemind.errors V2, V1 or OPENAI)."""
    model_in_body: bool = False
    """OpenAI style: the body's `model` field names the model (a name or an alias)."""
    check_ready: bool = True
    uploads: bool = False
    """Also takes uploads (a `multipart/form-data` or `image/*` body): those are not parsed as
    JSON; `RouteCall.body` is None and the handler reads `RouteCall.request`."""


@dataclass(frozen=True)
class ServerRoute:
    """A route of the server rather than of one model (`GET /v2/jobs/{job_id}`): no model lookup
    or readiness, but every other pipeline step (record, trace headers, deadline, error table,
    metrics, access log)."""

    method: str
    path: str
    name: str
    handler: Callable[[Request, RequestRecord], Awaitable[Response]]
    protocol: str = V2


@dataclass
class _MountedPath:
    method: str
    path: str
    protocol: str
    model_in_body: bool
    uploads: bool
    by_model: dict[str, Route] = field(default_factory=dict)


def stream_ended_by_shutdown() -> ServerNotReady:
    """The final error of a stream still open when the drain period ran out."""
    return ServerNotReady("the server is shutting down: the stream was ended before it finished")


UPLOAD_MEDIA_TYPES = ("multipart/form-data", "image/")


def media_type(request: Request) -> str:
    """The request's content type without its parameters, lower case ("" when it has none)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_upload(request: Request) -> bool:
    """A body a route with `uploads` reads itself: a form with files, or a raw image."""
    return media_type(request).startswith(UPLOAD_MEDIA_TYPES)


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json", headers=headers)


class RequestDeadline:
    """`async with`: the body is cancelled after `seconds`, and a timeout inside it becomes a
    BackendTimeout (504) naming `what`. A class rather than an @asynccontextmanager generator:
    it is entered on every request, and the generator machinery cost more than the timeout
    itself (issue 17 profile)."""

    __slots__ = ("_seconds", "_timeout", "_what")

    def __init__(self, seconds: float, what: str):
        self._seconds = seconds
        self._what = what
        self._timeout = asyncio.timeout(seconds)

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)  # never suppresses: it raises or returns None
        except TimeoutError:
            raise self._expired() from None
        if exc_type is not None and issubclass(exc_type, TimeoutError):
            raise self._expired() from None

    def _expired(self) -> BackendTimeout:
        return BackendTimeout(f"{self._what} did not finish within the {self._seconds:g} s request deadline")


class Pipeline:
    """The shared steps of every request, for REST and gRPC alike."""

    def __init__(self, service: InferenceService, metrics: ServerMetrics, settings: ComponentSettings):
        self.service = service
        self.metrics = metrics
        self.settings = settings
        self.allow = frozenset(h.lower() for h in settings.propagate_headers)
        self.payloads = PayloadLogger(settings, metrics.registry)
        self.drain_deadline: float | None = None
        """Set by `drain`: the perf_counter time by which every open stream has ended."""
        self.draining = asyncio.Event()
        """Set by `drain`, for streams that wait on it rather than poll (gRPC ModelStreamInfer)."""

    def drain(self, seconds: float) -> None:
        """Shutting down: each open stream may go on for `seconds`, then it ends with a final
        error event (ServerNotReady) instead of being cut by the server's grace limit."""
        self.drain_deadline = time.perf_counter() + seconds
        self.draining.set()

    def drain_seconds_left(self) -> float:
        """Seconds until open streams must end (0 when not draining or past the deadline)."""
        return 0.0 if self.drain_deadline is None else max(self.drain_deadline - time.perf_counter(), 0.0)

    # -- the record: begin and finish ---------------------------------------------------------------
    def begin(self, protocol: str, endpoint: str, model: str, headers: Iterable[tuple[str, str]]) -> RequestRecord:
        record = RequestRecord(
            protocol=protocol, endpoint=endpoint, model=model, headers=propagated_headers(headers, self.allow)
        )
        start_request_span(record)
        return record

    def fail(self, record: RequestRecord, exc: BaseException, protocol: str = V2) -> Response:
        status, body = error_body(exc, protocol)
        record.error = as_kubemind_error(exc).message
        return json_response(body, status)

    def finish(self, record: RequestRecord, response: Response | None = None, *, account: bool = False) -> None:
        if response is not None:
            record.status = response.status_code
            response.headers[REQUEST_ID] = record.request_id
        if account:
            self.service.account(record)
        finish_request(self.metrics, record, self.settings.log_requests)
        end_request_span(record)

    async def log_payloads(self, record: RequestRecord, request: Request, response: Response | None) -> None:
        """Queue the payload logger's events of a REST request (never waits on the sink; off:
        returns at once). A streamed reply's response event is queued when the stream ends
        (`_stream`)."""
        if not self.payloads.enabled:
            return
        with contextlib.suppress(Exception):  # a body that never arrived (over the limit): nothing to log
            self.payloads.request(record, await request.body(), request.headers.get("content-type", "application/json"))
        if response is not None and not isinstance(response, StreamingResponse):
            self.payloads.response(record, bytes(response.body), response.headers.get("content-type", "application/json"))

    def deadline(self, what: str) -> RequestDeadline:
        """The request deadline: past it the handler is cancelled and the client gets 504."""
        return RequestDeadline(self.settings.request_timeout_seconds, what)

    # -- REST --------------------------------------------------------------------------------------
    def rest_endpoint(
        self,
        name: str,
        handler: Callable[[Request, RequestRecord], Awaitable[Response]],
        *,
        protocol: str = V2,
        account: bool = False,
    ) -> Callable[[Request], Awaitable[Response]]:
        """A core endpoint: the handler does its own lookup (v2 paths, health, metadata)."""

        async def run(request: Request) -> Response:
            record = self.begin("rest", name, request.path_params.get("model_name", ""), request.headers.items())
            try:
                async with self.deadline(f"{name} request"):
                    response = await handler(request, record)
            except Exception as exc:
                response = self.fail(record, exc, protocol)
            if account:
                await self.log_payloads(record, request, response)
            self.finish(record, response, account=account)
            return response

        return run

    def mount(self, routes: Sequence[tuple[str, Route]]) -> list[tuple[str, str, Callable[[Request], Awaitable[Response]]]]:
        """Group declared (model name, route) pairs by method and path; one endpoint per path."""
        mounted: dict[tuple[str, str], _MountedPath] = {}
        for model_name, route in routes:
            key = (route.method, route.path)
            entry = mounted.setdefault(
                key, _MountedPath(route.method, route.path, route.protocol, route.model_in_body, route.uploads)
            )
            if (entry.protocol, entry.model_in_body, entry.uploads) != (route.protocol, route.model_in_body, route.uploads):
                raise ValueError(f"route {route.method} {route.path} is declared with two protocols")
            entry.by_model[model_name] = route
        return [(entry.method, entry.path, self._declared_endpoint(entry)) for entry in mounted.values()]

    def _declared_endpoint(self, entry: _MountedPath) -> Callable[[Request], Awaitable[Response]]:
        endpoint_name = next(iter(entry.by_model.values())).name

        async def run(request: Request) -> Response:
            record = self.begin("rest", endpoint_name, request.path_params.get("model_name", ""), request.headers.items())
            response: Response | None = None
            try:
                async with self.deadline(f"{endpoint_name} request"):
                    response = await self._call_declared(entry, request, record)
            except Exception as exc:
                response = self.fail(record, exc, entry.protocol)
            await self.log_payloads(record, request, response)
            if isinstance(response, StreamingResponse):
                response.headers[REQUEST_ID] = record.request_id
                return response  # the stream finishes the record when it ends
            self.finish(record, response)
            return response

        return run

    async def _call_declared(self, entry: _MountedPath, request: Request, record: RequestRecord) -> Response:
        raw = await request.body()
        body = parse_json_body(raw) if raw.strip() and not (entry.uploads and is_upload(request)) else None
        if entry.model_in_body:
            if not isinstance(body, dict):
                raise InvalidInput("body: must be a JSON object", param="body")
            name = body.get("model")
            if not isinstance(name, str) or not name:
                raise InvalidInput("model: required, a string", param="model")
            model, version = self.service.lookup(name, None, candidates=entry.by_model)
        else:
            model, version = self.service.lookup(
                request.path_params.get("model_name", ""), request.path_params.get("model_version")
            )
        record.model, record.version = model.name, version
        route = entry.by_model.get(model.name)
        if route is None:
            raise NotImplementedByModel(f"model '{model.name}' does not serve {entry.method} {entry.path}")
        if route.check_ready and not await self.service.is_ready(model):
            raise ModelNotReady(f"model '{model.name}' is not ready")
        headers = dict(record.headers)
        result = await route.handler(RouteCall(model, version, body, request, headers, record))
        if isinstance(result, EventStream):
            # The first event is awaited here, inside the deadline and before any byte is sent:
            # a request the backend rejects on its first step still gets a proper 4xx.
            try:
                first: dict[str, Any] | str | None = await anext(result.events)
            except StopAsyncIteration:
                first = None
            return self._stream(result, first, record, entry.protocol)
        if isinstance(result, Response):
            return result
        if isinstance(result, BaseModel):
            return json_response(result.model_dump(mode="json", exclude_none=True))
        return json_response(result)

    def _stream(
        self, stream: EventStream, first: dict[str, Any] | str | None, record: RequestRecord, protocol: str
    ) -> StreamingResponse:
        total = self.settings.request_timeout_seconds
        idle = self.settings.stream_idle_timeout_seconds
        started = record.started

        # The payload logger's response event of a stream: the body as sent, every event of it,
        # queued once the stream has ended (a client that hung up got no whole reply: none).
        sent: list[bytes] | None = [] if self.payloads.keeps_stream_response(record) else None

        async def events() -> AsyncIterator[bytes]:
            iterator = stream.events
            left = total
            ended = False
            try:
                if first is None:
                    ended = True
                    return
                chunk = encode_event(first)
                if sent is not None:
                    sent.append(chunk)
                yield chunk
                while True:
                    now = time.perf_counter()
                    left = total - (now - started)
                    wait = min(idle, max(left, 0.001))
                    if self.drain_deadline is not None:
                        wait = min(wait, max(self.drain_deadline - now, 0.001))
                    try:
                        item = await asyncio.wait_for(anext(iterator), timeout=wait)
                    except StopAsyncIteration:
                        break
                    chunk = encode_event(item)
                    if sent is not None:
                        sent.append(chunk)
                    yield chunk
                ended = True
            except Exception as exc:
                if isinstance(exc, TimeoutError) and self.drain_deadline is not None and time.perf_counter() >= self.drain_deadline:
                    exc = stream_ended_by_shutdown()
                elif isinstance(exc, TimeoutError):
                    exc = BackendTimeout(
                        f"the stream sent nothing for {idle:g} s" if left > idle else f"the stream ran past the {total:g} s deadline"
                    )
                status, body = error_body(exc, protocol)
                record.status, record.error = int(status), as_kubemind_error(exc).message
                tail = [encode_event(body), *([SSE_DONE.encode()] if protocol == OPENAI else [])]
                if sent is not None:
                    sent.extend(tail)
                for chunk in tail:
                    yield chunk
                ended = True
            finally:
                with contextlib.suppress(Exception):
                    await iterator.aclose()  # type: ignore[attr-defined]
                if sent is not None and ended:
                    self.payloads.response(record, b"".join(sent), STREAM_CONTENT_TYPE)
                self.finish(record)

        return StreamingResponse(events(), media_type=STREAM_CONTENT_TYPE)


__all__ = [
    "SSE_DONE",
    "EventStream",
    "Pipeline",
    "Route",
    "RouteCall",
    "RouteHandler",
    "RouteResult",
    "ServerRoute",
    "json_response",
    "stream_ended_by_shutdown",
]
