"""The Open Inference Protocol over REST, with Triton's extensions.

Routes are plain Starlette endpoints on a FastAPI app: the infer hot path parses the body with
kubemind's codecs instead of a pydantic model (KServe validates every request through pydantic
first, which is where much of its overhead goes). KServe's OpenAI routes are mounted on the same
app for models that implement KServe's OpenAI interface, and any model may add routes of its own
through a `register_routes(app)` method (the generate extension of LLM predictors uses it).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import ORJSONResponse
from kserve.model_repository import ModelRepository
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubemind.codecs import (
    JSON_HEADER_LENGTH,
    decode_rest_request,
    encode_rest_response,
    parse_json_body,
)
from kubemind.errors import InvalidInput, KubemindError, PayloadTooLarge, error_body
from kubemind.protocol.service import InferenceService
from kubemind.settings import ComponentSettings
from kubemind.telemetry import (
    REQUEST_ID,
    RequestRecord,
    ServerMetrics,
    finish_request,
    propagated_headers,
)

Handler = Callable[[Request, RequestRecord], Awaitable[Response]]


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json", headers=headers)


class BodyLimitMiddleware:
    """Answers 413 for bodies over the limit: at once when Content-Length says so, else as the
    body streams in (chunked uploads), before the endpoint sees it."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._reject(send, int(value))
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise PayloadTooLarge(f"request body is over the {self.limit}-byte limit")
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, send: Send, size: int) -> None:
        body = orjson.dumps({"error": f"request body of {size} bytes is over the {self.limit}-byte limit"})
        await send(
            {
                "type": "http.response.start",
                "status": HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class RestEndpoints:
    """The v2 REST endpoints, each wrapped so that it is timed, counted and logged once."""

    def __init__(self, service: InferenceService, metrics: ServerMetrics, settings: ComponentSettings):
        self.service = service
        self.metrics = metrics
        self.settings = settings
        self.allow = frozenset(h.lower() for h in settings.propagate_headers)

    def endpoint(self, name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            record = RequestRecord(
                protocol="rest",
                endpoint=name,
                model=request.path_params.get("model_name", ""),
                headers=propagated_headers(request.headers.items(), self.allow),
            )
            try:
                response = await handler(request, record)
            except Exception as exc:
                status, body = error_body(exc)
                record.error = body["error"]
                response = json_response(body, status)
            record.status = response.status_code
            if name == "infer":
                self.service.account(record)
            finish_request(self.metrics, record, self.settings.log_requests)
            response.headers[REQUEST_ID] = record.request_id
            return response

        return run

    # -- health and metadata ----------------------------------------------------------------------
    async def server_metadata(self, request: Request, record: RequestRecord) -> Response:
        return json_response(self.service.server_metadata())

    async def live(self, request: Request, record: RequestRecord) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request, record: RequestRecord) -> Response:
        ready = await self.service.server_ready()
        return json_response({"ready": ready}, 200 if ready else HTTPStatus.SERVICE_UNAVAILABLE)

    async def list_models(self, request: Request, record: RequestRecord) -> Response:
        return json_response({"models": list(self.service.repository.get_models())})

    async def model_metadata(self, request: Request, record: RequestRecord) -> Response:
        name, version = _model_path(request)
        return json_response(await self.service.model_metadata(name, version))

    async def model_ready(self, request: Request, record: RequestRecord) -> Response:
        name, version = _model_path(request)
        ready = await self.service.model_ready(name, version)
        return json_response({"name": name, "ready": ready}, 200 if ready else HTTPStatus.SERVICE_UNAVAILABLE)

    # -- Triton extensions ------------------------------------------------------------------------
    async def model_config(self, request: Request, record: RequestRecord) -> Response:
        name, version = _model_path(request)
        return json_response(self.service.model_config(name, version))

    async def model_statistics(self, request: Request, record: RequestRecord) -> Response:
        name, version = _model_path(request)
        return json_response({"model_stats": self.service.model_statistics(name or None, version)})

    async def repository_index(self, request: Request, record: RequestRecord) -> Response:
        body = await request.body()
        options = parse_json_body(body) if body.strip() else {}
        if not isinstance(options, dict):
            raise InvalidInput("repository index request body must be a JSON object")
        ready_only = options.get("ready", False)
        if not isinstance(ready_only, bool):
            raise InvalidInput("ready must be a boolean")
        return json_response(await self.service.repository_index(ready_only))

    # -- inference --------------------------------------------------------------------------------
    async def infer(self, request: Request, record: RequestRecord) -> Response:
        name, version = _model_path(request)
        since = record.started
        body = await request.body()
        json_length = _json_length(request.headers.get(JSON_HEADER_LENGTH))
        infer_request = decode_rest_request(body, json_length, name, version)
        since = record.stage("decode", since)
        response, served_version = await self.service.infer(infer_request, record.headers, record)
        since = time.perf_counter()
        payload, header_length = encode_rest_response(response, infer_request, served_version)
        record.stage("encode", since)
        if header_length is None:
            return Response(payload, media_type="application/json")
        return Response(
            payload,
            media_type="application/octet-stream",
            headers={JSON_HEADER_LENGTH: str(header_length)},
        )


def _model_path(request: Request) -> tuple[str, str | None]:
    return request.path_params.get("model_name", ""), request.path_params.get("model_version")


def _json_length(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit():
        raise InvalidInput(f"{JSON_HEADER_LENGTH} must be a non-negative integer, got {value!r}")
    return int(value)


def create_app(
    repository: ModelRepository, service: InferenceService, metrics: ServerMetrics, settings: ComponentSettings
) -> FastAPI:
    app = FastAPI(title="kubemind", docs_url=None, redoc_url=None, default_response_class=ORJSONResponse)
    endpoints = RestEndpoints(service, metrics, settings)
    model = "/v2/models/{model_name}"
    versioned = "/v2/models/{model_name}/versions/{model_version}"
    routes: list[tuple[str, str, Handler, str]] = [
        ("GET", "/v2", endpoints.server_metadata, "server_metadata"),
        ("GET", "/v2/health/live", endpoints.live, "live"),
        ("GET", "/v2/health/ready", endpoints.ready, "ready"),
        ("GET", "/v2/models", endpoints.list_models, "list_models"),
        ("GET", "/v2/models/stats", endpoints.model_statistics, "statistics"),
        ("POST", "/v2/repository/index", endpoints.repository_index, "repository_index"),
    ]
    for prefix in (versioned, model):
        routes += [
            ("GET", prefix, endpoints.model_metadata, "model_metadata"),
            ("GET", f"{prefix}/ready", endpoints.model_ready, "model_ready"),
            ("POST", f"{prefix}/infer", endpoints.infer, "infer"),
            ("GET", f"{prefix}/config", endpoints.model_config, "model_config"),
            ("GET", f"{prefix}/stats", endpoints.model_statistics, "statistics"),
        ]
    for method, path, handler, name in routes:
        app.add_route(path, endpoints.endpoint(name, handler), methods=[method])

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    app.add_route("/metrics", metrics_endpoint, methods=["GET"])
    _mount_model_routes(app, repository)
    _add_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_bytes)
    return app


def _mount_model_routes(app: FastAPI, repository: ModelRepository) -> None:
    # KServe's OpenAI package imports vLLM; if no model module imported it, no model is an
    # OpenAI model, and importing it here would fail where vLLM is not installed.
    if "kserve.protocol.rest.openai.openai_model" in sys.modules:
        from kserve.protocol.rest.openai.config import maybe_register_openai_endpoints

        maybe_register_openai_endpoints(app, repository)
    for model in repository.get_models().values():
        register = getattr(model, "register_routes", None)
        if callable(register):
            register(app)


async def request_validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI answers body-validation failures (KServe's OpenAI routes) with 422; the OIP and
    OpenAI contracts say 400, with a message naming the offending field."""
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        problems.append(f"{'.'.join(location) or 'body'}: {error.get('msg', 'invalid')}")
    message = "; ".join(problems) or "invalid request body"
    if request.url.path.startswith("/openai/"):
        param = problems[0].split(":", 1)[0].split(".", 1)[0] if problems else None
        error = {"message": message, "type": "BadRequestError", "param": param, "code": "400"}
        return json_response({"error": error}, HTTPStatus.BAD_REQUEST)
    return json_response({"error": message}, HTTPStatus.BAD_REQUEST)


def _add_error_handlers(app: FastAPI) -> None:
    """Errors outside kubemind's own endpoints (OpenAI routes, unknown paths) get the same
    {"error": message} body and status table."""

    async def kubemind_error(request: Request, exc: Exception) -> Response:
        status, body = error_body(exc)
        return json_response(body, status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return json_response({"error": str(exc.detail)}, exc.status_code)

    app.add_exception_handler(KubemindError, kubemind_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, request_validation_error)
    from kserve import errors as kserve_errors

    for kserve_error in (
        kserve_errors.InvalidInput,
        kserve_errors.ModelNotFound,
        kserve_errors.ModelNotReady,
        kserve_errors.InferenceError,
        kserve_errors.ServerNotReady,
        NotImplementedError,
    ):
        app.add_exception_handler(kserve_error, kubemind_error)
