"""`GraphModel`: one InferenceGraph served as a model named after the graph.

The graph is reached the ways any kubemind model is, on the one request pipeline:

- v2 infer, REST and gRPC (`/v2/models/{graph}/infer`, `ModelInfer`): the request's tensors are
  the graph's request; the reply holds the last step's outputs, and the request parameter
  `skipped_steps` (comma-separated step names) plus `skipped_details` (JSON) when soft steps failed;
- gRPC `ModelStreamInfer` with `stream` true: the final LLM step's text, response by response;
- the OIP generate extension (`/generate`, `/generate_stream`): `{"text_input", "image": base64,
  "parameters"}` -> `text_output`, streamed as SSE;
- OpenAI chat (`/openai/v1/chat/completions`, `model` = the graph): the last user message's text
  is `text_input`, an `image_url` data URL part is `image`; `stream: true` passes the LLM step's
  tokens through as chat chunks.

Sampling options the client sends (`max_tokens`, `temperature`, ...: OpenAI fields, generate's
`parameters`, v2 request parameters) apply to the graph's final LLM step, over the graph's own.

The router's own readiness does not follow its steps': a step that is down is reported, by
name and with its status, on the request that needed it (and skipped if it is soft).
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from kserve.protocol.infer_type import InferRequest, InferResponse

from kubemind.backend import Tensor
from kubemind.codecs import NumpyOutput
from kubemind.errors import OPENAI, InvalidInput
from kubemind.model import KubemindModel
from kubemind.protocol.pipeline import SSE_DONE, EventStream, Route, RouteCall
from kubemind_transformers.router.executor import GraphExecutor, GraphResult
from kubemind_transformers.router.graph import Graph
from kubemind_transformers.router.messages import Message, bytes_tensor
from kubemind_transformers.router.settings import RouterSettings
from kubemind_transformers.router.steps import ServiceClients, StepFailed, TextDeltas, sampling_of

IMAGE = "image"
TEXT_INPUT = "text_input"


class GraphModel(KubemindModel):
    """Executes one InferenceGraph; the server may hold several, sharing the service clients."""

    platform = "kubemind-router"
    backend = "router"

    def __init__(self, graph: Graph, settings: RouterSettings, clients: ServiceClients):
        super().__init__(graph.name)
        self.graph = graph
        self.clients = clients
        self.executor = GraphExecutor(graph, settings, clients)

    def load(self) -> bool:
        self.ready = True
        return self.ready

    def start(self) -> None:
        grpc_steps = [s for s in self.graph.service_steps() if s.options.protocol == "grpc-v2"]
        self.clients.start([self.executor.address(step) for step in grpc_steps])

    async def stop_async(self) -> None:
        await self.clients.close()

    async def healthy(self) -> bool:
        return self.ready

    # -- v2 infer ---------------------------------------------------------------------------------
    async def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        request = Message(
            [Tensor(t.name, t.datatype, t.as_numpy()) for t in payload.inputs],
            "inputs",
            parameters=dict(payload.parameters or {}),  # the transports decode them to plain values
        )
        result = await self.executor.run(request, dict(headers or {}))
        return self.infer_response(result, payload.id or "", payload.model_version)

    def infer_response(self, result: GraphResult, request_id: str, version: str | None) -> InferResponse:
        message = result.message or Message([])
        return InferResponse(
            response_id=request_id,
            model_name=self.name,
            model_version=version,
            infer_outputs=[NumpyOutput(t.name, t.array, t.datatype) for t in message.tensors],
            parameters=_skipped_parameters(result),
        )

    async def stream_infer(self, payload: InferRequest, headers: dict[str, str]) -> AsyncIterator[InferResponse]:
        """ModelStreamInfer with `stream` set: one response per text delta of the final step
        (the last one flagged final by the transport); a graph whose last step does not stream
        answers with one response."""
        request = Message(
            [Tensor(t.name, t.datatype, t.as_numpy()) for t in payload.inputs if t.name != "stream"],
            "inputs",
            parameters=dict(payload.parameters or {}),  # the transports decode them to plain values
        )
        result = await self.executor.run(request, dict(headers), stream=True)
        request_id = payload.id or ""

        async def responses() -> AsyncIterator[InferResponse]:
            if result.stream is None:
                yield self.infer_response(result, request_id, payload.model_version)
                return
            async for text, _finish in result.stream:
                yield InferResponse(
                    response_id=request_id,
                    model_name=self.name,
                    model_version=payload.model_version,
                    infer_outputs=[NumpyOutput("text_output", bytes_tensor("text_output", [text.encode()]).array, "BYTES")],
                    parameters=_skipped_parameters(result),
                )

        return responses()

    # -- declared routes ---------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        routes = [
            Route("POST", "/openai/v1/chat/completions", "openai_chat_completions", self._chat, protocol=OPENAI, model_in_body=True),
        ]
        for prefix in ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}"):
            routes.append(Route("POST", f"{prefix}/generate", "generate", self._generate))
            routes.append(Route("POST", f"{prefix}/generate_stream", "generate_stream", self._generate_stream))
        return routes

    async def _generate(self, call: RouteCall) -> dict[str, Any]:
        result = await self.executor.run(generate_request(call.body), call.headers, record=call.record)
        body: dict[str, Any] = {"model_name": self.name, "model_version": call.version, "text_output": _final_text(result)}
        return body | _skipped_body(result)

    async def _generate_stream(self, call: RouteCall) -> EventStream:
        result = await self.executor.run(generate_request(call.body), call.headers, stream=True, record=call.record)
        head = {"model_name": self.name, "model_version": call.version} | _skipped_body(result)

        async def events() -> AsyncIterator[dict[str, Any]]:
            async for text, finish in _deltas(result):
                yield head | {"text_output": text} | ({"finish_reason": finish} if finish else {})

        return EventStream(events())

    async def _chat(self, call: RouteCall) -> dict[str, Any] | EventStream:
        body = call.body if isinstance(call.body, dict) else {}
        stream = bool(body.get("stream"))
        result = await self.executor.run(chat_request(body), call.headers, stream=stream, record=call.record)
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        extra = _skipped_body(result)
        if not stream:
            return {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": self.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": _final_text(result)}, "finish_reason": "stop"}],
            } | extra

        async def chunks() -> AsyncIterator[dict[str, Any] | str]:
            first = True
            async for text, finish in _deltas(result):
                delta: dict[str, Any] = {"role": "assistant", "content": text} if first else {"content": text}
                chunk = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": self.name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                yield chunk | (extra if first else {})
                first = False
            yield SSE_DONE

        return EventStream(chunks())


async def _deltas(result: GraphResult) -> TextDeltas:
    """The final step's deltas; a graph whose last step did not stream gives its text at once."""
    if result.stream is not None:
        async for item in result.stream:
            yield item
        return
    yield _final_text(result), "stop"


def _final_text(result: GraphResult) -> str:
    text = result.message.text() if result.message is not None else None
    if text is None:
        # A graph that ends in a soft LLM step that was skipped, or one that never ends in text.
        skipped = ", ".join(f"{s.step} ({s.reason})" for s in result.skipped) or "none"
        raise StepFailed(f"the graph's last reply holds no text_output; skipped steps: {skipped}")
    return text


def _skipped_body(result: GraphResult) -> dict[str, Any]:
    return {"skipped_steps": [s.as_dict() for s in result.skipped]} if result.skipped else {}


def _skipped_parameters(result: GraphResult) -> dict[str, Any] | None:
    if not result.skipped:
        return None
    return {
        "skipped_steps": ",".join(s.step for s in result.skipped),
        "skipped_details": orjson.dumps([s.as_dict() for s in result.skipped]).decode(),
    }


def _image_bytes(encoded: str, where: str) -> bytes:
    if encoded.startswith("data:"):
        encoded = encoded.split(",", 1)[-1]
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: not valid base64", param=where.split(".", 1)[0]) from None


def _request(text: str, image: bytes | None, parameters: dict[str, Any] | None = None) -> Message:
    tensors = [bytes_tensor(TEXT_INPUT, [text.encode("utf-8")])]
    if image is not None:
        tensors.append(bytes_tensor(IMAGE, [image]))
    return Message(tensors, "inputs", parameters=parameters or {})


def generate_request(body: Any) -> Message:
    """The graph's request from an OIP generate body: text_input, an optional base64 image."""
    if not isinstance(body, dict):
        raise InvalidInput("body: must be a JSON object with text_input", param="body")
    text = body.get("text_input")
    if not isinstance(text, str) or not text:
        raise InvalidInput("text_input: required, a non-empty string", param="text_input")
    image = body.get(IMAGE)
    if image is not None and not isinstance(image, str):
        raise InvalidInput("image: must be a base64 string", param="image")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput("parameters: must be an object", param="parameters")
    return _request(text, _image_bytes(image, "image") if image else None, parameters)


def last_user_message(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat body's last user message (what a router or RAG answers); 400 naming
    `messages` when there is none."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("messages: required, a non-empty list", param="messages")
    user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
    if user is None:
        raise InvalidInput("messages: no user message", param="messages")
    return user


def chat_request(body: dict[str, Any]) -> Message:
    """The graph's request from an OpenAI chat body: the last user message's text and image."""
    content = last_user_message(body).get("content")
    texts: list[str] = []
    image: bytes | None = None
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(str(part.get("text", "")))
            elif kind == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                if not isinstance(url, str) or not url.startswith("data:"):
                    raise InvalidInput("messages: image_url must be a data: URL (the router fetches nothing)", param="messages")
                image = _image_bytes(url, "messages.image_url")
    text = " ".join(t for t in texts if t).strip()
    if not text:
        raise InvalidInput("messages: the user message has no text", param="messages")
    sampling = sampling_of(body)
    if "max_completion_tokens" in body and body["max_completion_tokens"] is not None:
        sampling["max_tokens"] = body["max_completion_tokens"]
    return _request(text, image, sampling)


__all__ = ["GraphModel", "chat_request", "generate_request"]
