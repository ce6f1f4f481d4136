"""The Open Inference Protocol over REST, with Triton's extensions.

Routes are plain Starlette endpoints on a FastAPI app: the infer hot path parses the body with
kubemind's codecs instead of a pydantic model (KServe validates every request through pydantic
first, which is where much of its overhead goes). Every route — the v2 endpoints here and the
routes models declare (OpenAI, the generate extension, v1) — runs through the one pipeline in
`kubemind.protocol.pipeline`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.responses import ORJSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubemind.codecs import (
    JSON_HEADER_LENGTH,
    decode_rest_request,
    encode_rest_response,
    parse_json_body,
    parse_rest_request,
)
from kubemind.errors import (
    OPENAI,
    InvalidInput,
    KubemindError,
    ModelNotFound,
    PayloadTooLarge,
    clip_message,
    error_body,
)
from kubemind.protocol.http_guard import ContentEncodingMiddleware
from kubemind.protocol.pipeline import Pipeline, Route, ServerRoute, json_response
from kubemind.protocol.rest_forward import grpc_request_from_rest, rest_reply_from_grpc
from kubemind.protocol.service import InferenceService
from kubemind.protocol.shared_memory import cuda_not_supported, cuda_status
from kubemind.settings import ComponentSettings
from kubemind.telemetry import RequestRecord

Handler = Callable[[Request, RequestRecord], Awaitable[Response]]


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
    """The v2 REST endpoints; `create_app` wraps each in the pipeline."""

    def __init__(self, service: InferenceService):
        self.service = service

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
        parsed = parse_rest_request(body, json_length)
        forwarded = grpc_request_from_rest(parsed, name, version) if self.service.forwards_grpc(name, version) else None
        if forwarded is not None:
            # The passthrough path: the tensors go on as bytes, never decoded (rest_forward).
            since = record.stage("decode", since)
            reply = await self.service.forward_grpc(forwarded, record.headers, record)
            if reply is not None:
                since = time.perf_counter()
                payload, header_length = rest_reply_from_grpc(reply, parsed)
                record.stage("encode", since)
                return _infer_reply(payload, header_length)
        shared_memory = self.service.shared_memory
        infer_request = decode_rest_request(body, json_length, name, version, shared_memory, parsed=parsed)
        since = record.stage("decode", since)
        response, served_version = await self.service.infer(infer_request, record.headers, record)
        since = time.perf_counter()
        payload, header_length = encode_rest_response(response, infer_request, served_version, shared_memory)
        record.stage("encode", since)
        return _infer_reply(payload, header_length)


    # -- system shared memory ---------------------------------------------------------------------
    async def shm_status(self, request: Request, record: RequestRecord) -> Response:
        return json_response(self.service.shared_memory.status(request.path_params.get("region_name")))

    async def shm_register(self, request: Request, record: RequestRecord) -> Response:
        body = await request.body()
        options = parse_json_body(body) if body.strip() else None
        if not isinstance(options, dict):
            raise InvalidInput("register request body must be a JSON object with key, offset and byte_size")
        self.service.shared_memory.register(
            request.path_params["region_name"], options.get("key", ""), options.get("offset", 0), options.get("byte_size")
        )
        return json_response({})

    async def shm_unregister(self, request: Request, record: RequestRecord) -> Response:
        self.service.shared_memory.unregister(request.path_params.get("region_name"))
        return json_response({})

    async def cuda_shm_status(self, request: Request, record: RequestRecord) -> Response:
        return json_response(cuda_status(request.path_params.get("region_name")))

    async def cuda_shm_register(self, request: Request, record: RequestRecord) -> Response:
        cuda_not_supported()
        return json_response({})

    async def cuda_shm_unregister(self, request: Request, record: RequestRecord) -> Response:
        return json_response({})  # nothing can have been registered


def _infer_reply(payload: bytes, header_length: int | None) -> Response:
    if header_length is None:
        return Response(payload, media_type="application/json")
    return Response(payload, media_type="application/octet-stream", headers={JSON_HEADER_LENGTH: str(header_length)})


def _model_path(request: Request) -> tuple[str, str | None]:
    return request.path_params.get("model_name", ""), request.path_params.get("model_version")


def _json_length(value: str | None) -> int | None:
    if value is None:
        return None
    if not (value.strip().isascii() and value.strip().isdigit()):  # str.isdigit takes '²' too
        raise InvalidInput(f"{JSON_HEADER_LENGTH} must be a non-negative integer, got {value!r}")
    return int(value)


def create_app(
    pipeline: Pipeline,
    declared: Sequence[tuple[str, Route]],
    settings: ComponentSettings,
    server_routes: Sequence[ServerRoute] = (),
) -> FastAPI:
    """The REST app: the v2 endpoints, then the routes the models and the server's extensions
    declared, all on `pipeline`."""
    app = FastAPI(title="kubemind", docs_url=None, redoc_url=None, default_response_class=ORJSONResponse)
    endpoints = RestEndpoints(pipeline.service)
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
    shm, cuda, region = "/v2/systemsharedmemory", "/v2/cudasharedmemory", "/region/{region_name}"
    for prefix in (f"{shm}{region}", shm):
        routes += [
            ("GET", f"{prefix}/status", endpoints.shm_status, "shm_status"),
            ("POST", f"{prefix}/unregister", endpoints.shm_unregister, "shm_unregister"),
        ]
    routes.append(("POST", f"{shm}{region}/register", endpoints.shm_register, "shm_register"))
    for prefix in (f"{cuda}{region}", cuda):
        routes += [
            ("GET", f"{prefix}/status", endpoints.cuda_shm_status, "cuda_shm_status"),
            ("POST", f"{prefix}/unregister", endpoints.cuda_shm_unregister, "cuda_shm_unregister"),
        ]
    routes.append(("POST", f"{cuda}{region}/register", endpoints.cuda_shm_register, "cuda_shm_register"))
    for method, path, handler, name in routes:
        app.add_route(path, pipeline.rest_endpoint(name, handler, account=name == "infer"), methods=[method])
    for method, path, endpoint in pipeline.mount(declared):
        app.add_route(path, endpoint, methods=[method])
    for route in server_routes:
        app.add_route(route.path, pipeline.rest_endpoint(route.name, route.handler, protocol=route.protocol), methods=[route.method])
    openai_models = sorted({name for name, route in declared if route.protocol == OPENAI})
    if openai_models:
        app.add_route(
            "/openai/v1/models",
            pipeline.rest_endpoint("openai_models", _openai_model_list(pipeline.service, openai_models), protocol=OPENAI),
            methods=["GET"],
        )
        app.add_route(
            "/openai/v1/models/{model_id:path}",
            pipeline.rest_endpoint("openai_model", _openai_model(pipeline.service, openai_models), protocol=OPENAI),
            methods=["GET"],
        )

    async def metrics_endpoint(request: Request) -> Response:
        return Response(pipeline.metrics.exposition(), media_type="text/plain; version=0.0.4")

    app.add_route("/metrics", metrics_endpoint, methods=["GET"])
    _add_error_handlers(app)
    app.add_middleware(ContentEncodingMiddleware, limit=settings.max_request_bytes)  # inside the limit
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_bytes)
    return app


def _openai_model_list(service: InferenceService, names: Sequence[str]) -> Handler:
    """GET /openai/v1/models: every model that declared an OpenAI route, by name and alias."""

    async def handler(request: Request, record: RequestRecord) -> Response:
        return json_response({"object": "list", "data": _openai_model_objects(service, names)})

    return handler


def _openai_model_objects(service: InferenceService, names: Sequence[str]) -> list[dict[str, Any]]:
    data = []
    for name in names:
        model = service.repository.get_model(name)
        created = int(getattr(model, "created", 0) or time.time())
        for model_id in dict.fromkeys((name, *getattr(model, "aliases", ()))):
            data.append({"id": model_id, "object": "model", "created": created, "owned_by": "kubemind"})
    return data


def _openai_model(service: InferenceService, names: Sequence[str]) -> Handler:
    """GET /openai/v1/models/{id}: one model object (by name or alias), 404 for another id."""

    async def handler(request: Request, record: RequestRecord) -> Response:
        model_id = request.path_params.get("model_id", "")
        for entry in _openai_model_objects(service, names):
            if entry["id"] == model_id:
                return json_response(entry)
        raise ModelNotFound(f"model: '{clip_message(model_id, 200)}' is not served here", param="model")

    return handler


def _add_error_handlers(app: FastAPI) -> None:
    """Errors outside every endpoint (unknown paths, wrong methods, a body over the limit while
    it streams in) get the same {"error": message} body and status table."""

    async def kubemind_error(request: Request, exc: Exception) -> Response:
        status, body = error_body(exc)
        return json_response(body, status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return json_response({"error": str(exc.detail)}, exc.status_code, headers=dict(exc.headers or {}))  # 405: Allow

    app.add_exception_handler(KubemindError, kubemind_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
