"""One error hierarchy for every kubemind component.

Each error carries an `http.HTTPStatus`; `GRPC_STATUS` maps that status to a gRPC code, and
`error_response`/`grpc_status` are the only places either transport turns an exception into a
reply. Errors raised by KServe itself (or by model code using KServe's classes) are translated
by `as_kubemind_error`, so both transports answer them the same way.
"""

from __future__ import annotations

import contextlib
import logging
from http import HTTPStatus
from typing import Any

import grpc

logger = logging.getLogger("kubemind.errors")


# Messages travel in gRPC trailers (8 kB by default: past it the client sees RESOURCE_EXHAUSTED
# instead of the error) and in log lines; whatever a client sent is cut to this in a message.
MAX_MESSAGE_LENGTH = 2000


def clip_message(message: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    if len(message) <= limit:
        return message
    return f"{message[: limit - 40]}... ({len(message) - limit + 40} more characters)"


class KubemindError(Exception):
    """Base class: a message meant for the client and the HTTP status that goes with it."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str, *, param: str | None = None):
        message = clip_message(message)
        super().__init__(message)
        self.message = message
        self.param = param
        """The request field the error is about (OpenAI's `param`); None when unknown."""

    def __str__(self) -> str:
        return self.message


class InvalidInput(KubemindError):
    """The request is malformed or does not fit the model's signature."""

    status = HTTPStatus.BAD_REQUEST


class InvalidSettings(KubemindError):
    """A component's settings (flags or environment) do not validate."""

    status = HTTPStatus.BAD_REQUEST


class ModelNotFound(KubemindError):
    """No model (or no such version of it) is served here."""

    status = HTTPStatus.NOT_FOUND


class ModelNotReady(KubemindError):
    """The model exists but cannot serve yet (loading, or its backend is down)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class ServerNotReady(KubemindError):
    """The server is starting or draining."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class BackendUnavailable(KubemindError):
    """The backend (Triton, vLLM, a remote predictor) cannot be reached."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class BackendTimeout(KubemindError):
    """The backend did not answer within the request deadline."""

    status = HTTPStatus.GATEWAY_TIMEOUT


class PayloadTooLarge(KubemindError):
    """The request body is over the configured limit."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UnsupportedMediaType(KubemindError):
    """The request body's content type is not one the endpoint understands."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class NotImplementedByModel(KubemindError):
    """The endpoint exists but the model does not implement it."""

    status = HTTPStatus.NOT_IMPLEMENTED


class InternalError(KubemindError):
    """A bug or an unexpected failure; the message is safe to show."""

    status = HTTPStatus.INTERNAL_SERVER_ERROR


GRPC_STATUS: dict[HTTPStatus, grpc.StatusCode] = {
    HTTPStatus.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    HTTPStatus.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
    HTTPStatus.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    HTTPStatus.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    HTTPStatus.CONFLICT: grpc.StatusCode.ALREADY_EXISTS,
    HTTPStatus.PRECONDITION_FAILED: grpc.StatusCode.FAILED_PRECONDITION,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: grpc.StatusCode.INVALID_ARGUMENT,
    HTTPStatus.TOO_MANY_REQUESTS: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.INTERNAL_SERVER_ERROR: grpc.StatusCode.INTERNAL,
    HTTPStatus.NOT_IMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    HTTPStatus.SERVICE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    HTTPStatus.GATEWAY_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def unknown_model_message(name: str, version: str | None = None) -> str:
    """Triton's text for an unknown model or version (tritonclient users match on it)."""
    name = clip_message(name, 200)
    if version:
        return f"Request for unknown model: '{name}' version {clip_message(version, 100)} is not found"
    return f"Request for unknown model: '{name}' is not found"


def grpc_code(status: HTTPStatus) -> grpc.StatusCode:
    """The gRPC status code for an HTTP status (4xx without an entry -> INVALID_ARGUMENT)."""
    if status in GRPC_STATUS:
        return GRPC_STATUS[status]
    return grpc.StatusCode.INVALID_ARGUMENT if 400 <= status < 500 else grpc.StatusCode.INTERNAL


def as_kubemind_error(exc: BaseException) -> KubemindError:
    """Translate any exception into a KubemindError without losing its message."""
    if isinstance(exc, KubemindError):
        return exc
    from kserve import errors as kserve_errors  # lazy: keeps this module importable without kserve

    if isinstance(exc, kserve_errors.InvalidInput):
        return InvalidInput(str(exc.reason))
    if isinstance(exc, kserve_errors.ModelNotFound):
        return ModelNotFound(str(exc))
    if isinstance(exc, kserve_errors.ModelNotReady):
        return ModelNotReady(str(exc))
    if isinstance(exc, kserve_errors.ServerNotReady | kserve_errors.ServerNotLive):
        return ServerNotReady(str(exc))
    if isinstance(exc, kserve_errors.InferenceError):
        error = InternalError(str(exc.reason))
        if exc.status:
            with contextlib.suppress(ValueError):
                error.status = HTTPStatus(int(exc.status))
        return error
    from starlette.requests import ClientDisconnect  # lazy, as kserve above

    if isinstance(exc, ClientDisconnect):  # the client hung up mid-body
        # Not the server's fault and no reply can reach the client: not a 500, no traceback.
        return InvalidInput("the client closed the connection before the request body was complete")
    if isinstance(exc, NotImplementedError):
        return NotImplementedByModel(str(exc) or "not implemented")
    if isinstance(exc, TimeoutError):  # asyncio.timeout / wait_for on a request deadline
        return BackendTimeout(str(exc) or "the request did not finish within its deadline")
    validation = _pydantic_validation_error(exc)
    if validation is not None:
        return validation
    # Not an error kubemind or KServe raised on purpose: a bug. The client gets a 500 with the
    # exception's name; the log gets the traceback.
    logger.error("unexpected %s while serving a request", type(exc).__name__, exc_info=exc)
    return InternalError(f"internal error: {type(exc).__name__}: {exc}")


def _pydantic_validation_error(exc: BaseException) -> InvalidInput | None:
    """A pydantic ValidationError (a request body model) as a 400 naming the first bad field."""
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover - pydantic is a core dependency
        return None
    if not isinstance(exc, ValidationError):
        return None
    problems, first = [], None
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        first = first or location.split(".", 1)[0]
        problems.append(f"{location}: {error.get('msg', 'invalid')}")
    return InvalidInput("; ".join(problems) or "invalid request body", param=first)


def error_param(error: KubemindError) -> str | None:
    """The field an error names: its `param`, else a leading identifier before a colon."""
    if error.param:
        return error.param
    head = error.message.split(":", 1)[0].strip()
    head = head.split("[", 1)[0].split(".", 1)[0]
    return head if head.isidentifier() and ":" in error.message else None


# Error body shapes, chosen by the protocol a route declares (never by its URL).
V2 = "v2"
V1 = "v1"
OPENAI = "openai"


def error_body(exc: BaseException, protocol: str = V2) -> tuple[HTTPStatus, dict[str, Any]]:
    """The REST reply for an exception: status and body in the route's protocol.

    v2 and v1: {"error": message}. OpenAI: {"error": {message, type, param, code}}.
    """
    error = as_kubemind_error(exc)
    if protocol == OPENAI:
        return error.status, {
            "error": {
                "message": error.message,
                "type": type(error).__name__,
                "param": error_param(error),
                "code": str(int(error.status)),
            }
        }
    return error.status, {"error": error.message}
