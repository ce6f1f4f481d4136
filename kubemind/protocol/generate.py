"""The OIP generate extension (`/v2/models/{name}/generate` and `/generate_stream`, SSE).

It is protocol, not vLLM: any model that implements `TextGenerator` gets both routes, on the one
pipeline, so lookup, versions, readiness, deadlines and the error table are the core's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol, runtime_checkable

from kubemind.errors import InvalidInput
from kubemind.protocol.pipeline import EventStream, Route, RouteCall


@runtime_checkable
class TextGenerator(Protocol):
    """A model that turns a prompt into text (an LLM predictor)."""

    async def generate_text(self, prompt: str, options: Mapping[str, Any]) -> str:
        """One whole completion of `prompt`."""
        ...

    async def stream_text(self, prompt: str, options: Mapping[str, Any]) -> AsyncIterator[tuple[str, str | None]]:
        """Text deltas and the finish reason. Validation happens before the iterator is
        returned, so a bad request fails before any byte of the stream is sent."""
        ...


def _parse(call: RouteCall) -> tuple[str, dict[str, Any]]:
    body = call.body
    if not isinstance(body, dict):
        raise InvalidInput("body: must be a JSON object with text_input", param="body")
    prompt = body.get("text_input")
    if not isinstance(prompt, str) or not prompt:
        raise InvalidInput("text_input: required, a non-empty string", param="text_input")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput("parameters: must be an object", param="parameters")
    return prompt, parameters


async def _generate(call: RouteCall) -> dict[str, Any]:
    model = call.model
    assert isinstance(model, TextGenerator)
    prompt, options = _parse(call)
    text = await model.generate_text(prompt, options)
    return {"model_name": call.model.name, "model_version": call.version, "text_output": text}


async def _generate_stream(call: RouteCall) -> EventStream:
    model = call.model
    assert isinstance(model, TextGenerator)
    prompt, options = _parse(call)
    deltas = await model.stream_text(prompt, options)

    async def events() -> AsyncIterator[dict[str, Any]]:
        async for text, finish_reason in deltas:
            event: dict[str, Any] = {"model_name": call.model.name, "model_version": call.version, "text_output": text}
            if finish_reason is not None:
                event["finish_reason"] = finish_reason
            yield event

    return EventStream(events())


def generate_routes() -> list[Route]:
    routes = []
    for prefix in ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}"):
        routes.append(Route("POST", f"{prefix}/generate", "generate", _generate))
        routes.append(Route("POST", f"{prefix}/generate_stream", "generate_stream", _generate_stream))
    return routes


__all__ = ["TextGenerator", "generate_routes"]
