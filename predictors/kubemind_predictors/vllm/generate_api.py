"""The OIP generate extension (/v2/models/{name}/generate and /generate_stream, SSE) and the
400 answer for request bodies that fail validation on the OpenAI routes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from kubemind.errors import InvalidInput, ModelNotFound, ModelNotReady, error_body

if TYPE_CHECKING:
    from kubemind_predictors.vllm.predictor import VLLMPredictor


def register_generate_routes(app: FastAPI, model: VLLMPredictor) -> None:
    async def generate(request: Request) -> Response:
        try:
            prompt, options = await _parse(request, model)
            text = await model.generate_text(prompt, options)
        except Exception as exc:
            return _error(exc)
        return JSONResponse(
            {"model_name": model.name, "model_version": model.default_version, "text_output": text}
        )

    async def generate_stream(request: Request) -> Response:
        try:
            prompt, options = await _parse(request, model)
            deltas = await model.stream_text(prompt, options)
        except Exception as exc:
            return _error(exc)

        async def events() -> AsyncIterator[str]:
            async for text, finish_reason in deltas:
                event: dict[str, Any] = {
                    "model_name": model.name,
                    "model_version": model.default_version,
                    "text_output": text,
                }
                if finish_reason is not None:
                    event["finish_reason"] = finish_reason
                yield f"data: {json.dumps(event)}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    for prefix in ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}"):
        app.add_api_route(f"{prefix}/generate", generate, methods=["POST"])
        app.add_api_route(f"{prefix}/generate_stream", generate_stream, methods=["POST"])


async def _parse(request: Request, model: VLLMPredictor) -> tuple[str, dict[str, Any]]:
    name = request.path_params["model_name"]
    if name != model.name:
        raise ModelNotFound(f"model '{name}' is not served here")
    model.resolve_version(request.path_params.get("model_version"))
    if not model.ready:
        raise ModelNotReady(f"model '{name}' is not ready")
    try:
        body = await request.json()
    except ValueError as exc:
        raise InvalidInput(f"body: not JSON ({exc})") from exc
    if not isinstance(body, dict) or not isinstance(body.get("text_input"), str):
        raise InvalidInput("text_input: required, a string")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput("parameters: must be an object")
    return body["text_input"], parameters


def _error(exc: Exception) -> Response:
    status, body = error_body(exc)
    return JSONResponse(body, status_code=int(status))
