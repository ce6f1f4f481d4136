"""Calling one step's service: grpc-v2 with the core OIP client or v2 over REST (the binary
tensor extension), LLMs over OpenAI chat or the OIP generate extension (both can stream).

Every call carries the step's deadline and the request's allow-listed trace headers with its
`x-request-id` (gRPC metadata, HTTP headers, and the v2 request id). A service's error keeps its
status (404, 503, 504...) and message; the executor adds which step and service it was.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httpx
import orjson

from kubemind.backend import Tensor
from kubemind.codecs import JSON_HEADER_LENGTH, array_from_json, array_to_bytes
from kubemind.errors import BackendTimeout, BackendUnavailable, KubemindError
from kubemind.oip_client import OIPClient, RetryPolicy
from kubemind.protocol.sse import DONE, BadEvent, event_data, read_event
from kubemind.telemetry import REQUEST_ID
from kubemind.tracing import client_span, outbound
from kubemind_transformers.router.graph import Step
from kubemind_transformers.router.messages import Message, text_message

TextDeltas = AsyncIterator[tuple[str, str | None]]
"""A streamed answer: text deltas and, on the last, the finish reason."""


class StepFailed(KubemindError):
    """A step failed: its service's own status (404, 503...), 504 past the step's deadline, 502
    when the service answered something that is not an answer."""

    status = HTTPStatus.BAD_GATEWAY

    def __init__(self, message: str, status: HTTPStatus | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


SAMPLING_KEYS = frozenset(
    {"max_tokens", "temperature", "top_p", "top_k", "min_p", "stop", "seed",
     "presence_penalty", "frequency_penalty", "repetition_penalty"}
)  # fmt: skip
"""The request parameters a client may set for the graph's final LLM step (over the graph's own)."""


def sampling_of(parameters: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in parameters.items() if key in SAMPLING_KEYS and value is not None}


@dataclass(frozen=True)
class Call:
    """One call of one step: where, with which headers, and until when."""

    address: str
    headers: Mapping[str, str]
    timeout: float
    sampling: Mapping[str, Any] = field(default_factory=dict)
    """The client's sampling options; only the graph's final LLM step gets them."""

    @property
    def request_id(self) -> str:
        return self.headers.get(REQUEST_ID, "")


class ServiceClients:
    """The router's long-lived connections: one OIP channel per gRPC address, one HTTP pool."""

    def __init__(self, retry_budget: int):
        self.retry_budget = retry_budget
        self._grpc: dict[str, OIPClient] = {}
        self._http: httpx.AsyncClient | None = None

    def start(self, grpc_addresses: list[str]) -> None:
        """Open the channels to `grpc_addresses` and the HTTP pool; graphs of one server share
        the clients, so a second call only adds channels."""
        for address in grpc_addresses:
            self.grpc(address)
        if self._http is None:
            self._http = httpx.AsyncClient(limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))

    def grpc(self, address: str) -> OIPClient:
        client = self._grpc.get(address)
        if client is None:
            # The step's deadline is passed per call; this timeout is only the client's fallback.
            client = OIPClient(address, RetryPolicy(timeout=30.0, retry_budget=self.retry_budget, backoff=0.05, cooldown=0.5))
            client.connect()
            self._grpc[address] = client
        return client

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise BackendUnavailable("the router's HTTP client is not started")
        return self._http

    async def close(self) -> None:
        for client in self._grpc.values():
            await client.close()
        self._grpc.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None


async def call_grpc(clients: ServiceClients, step: Step, call: Call, tensors: list[Tensor]) -> Message:
    model = step.options.model or step.service
    outputs = await clients.grpc(call.address).infer(
        model,
        tensors,
        request_id=call.request_id,
        timeout=call.timeout,
        metadata=tuple(call.headers.items()),
    )
    return Message(outputs, "outputs", model_name=model)


async def call_rest(clients: ServiceClients, step: Step, call: Call, tensors: list[Tensor]) -> Message:
    """v2 infer over HTTP/1.1: inputs in the binary tensor extension (raw bytes after the JSON
    header, as tritonclient sends them), outputs asked for as JSON."""
    model = step.options.model or step.service
    blobs = [array_to_bytes(t.array, t.datatype) for t in tensors]
    header = orjson.dumps({
        "id": call.request_id,
        "inputs": [
            {"name": t.name, "datatype": t.datatype, "shape": list(t.array.shape),
             "parameters": {"binary_data_size": len(blob)}}
            for t, blob in zip(tensors, blobs, strict=True)
        ],
    })
    headers = {**call.headers, "content-type": "application/octet-stream",
               JSON_HEADER_LENGTH: str(len(header))}
    response = await _send(clients, call, f"/v2/models/{model}/infer", b"".join([header, *blobs]), headers)
    try:
        reply = orjson.loads(response.content)
        outputs = [
            Tensor(o["name"], o["datatype"], array_from_json(o["name"], o["datatype"], o["shape"], o["data"]))
            for o in reply["outputs"]
        ]
    except (orjson.JSONDecodeError, KeyError, TypeError, KubemindError) as exc:
        raise StepFailed(f"not a v2 infer answer: {exc}") from None
    return Message(outputs, "outputs", model_name=model)


async def _send(
    clients: ServiceClients, call: Call, path: str, content: bytes, headers: Mapping[str, str], *, stream: bool = False
) -> httpx.Response:
    """POST to the step's service: a transport failure or timeout becomes 503/504, an answer
    other than 200 the service's own status and message. With `stream`, the body is left
    unread for the caller (who closes it)."""
    url = _http_base(call.address) + path
    with client_span(f"POST {path}", {"http.request.method": "POST", "url.full": url}) as current:
        request = clients.http.build_request("POST", url, content=content, headers=outbound(headers), timeout=call.timeout)
        try:
            response = await clients.http.send(request, stream=stream)
        except httpx.TimeoutException:
            raise BackendTimeout(f"no answer within {call.timeout:g} s") from None
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"cannot reach {call.address}: {exc}") from None
        if current is not None:
            current.set_attribute("http.response.status_code", response.status_code)
    if response.status_code != 200:
        error = await response.aread()
        await response.aclose()
        raise StepFailed(_error_message(error), _status(response.status_code))
    return response


def _http_base(address: str) -> str:
    return address if address.startswith(("http://", "https://")) else f"http://{address}"


def _error_message(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")[:500]
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error if error is not None else parsed)


def _status(code: int) -> HTTPStatus:
    try:
        return HTTPStatus(code)
    except ValueError:
        return HTTPStatus.BAD_GATEWAY


def _llm_request(step: Step, call: Call, prompt: str, stream: bool) -> tuple[str, dict[str, Any]]:
    model = step.options.model or step.service
    parameters = {**step.options.parameters, **call.sampling}
    if step.options.protocol == "openai-chat":
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": stream, **parameters}
        return "/openai/v1/chat/completions", body
    return f"/v2/models/{model}/{'generate_stream' if stream else 'generate'}", {"text_input": prompt, "parameters": parameters}


async def call_llm(clients: ServiceClients, step: Step, call: Call, prompt: str) -> Message:
    """The whole answer of an LLM step."""
    path, body = _llm_request(step, call, prompt, stream=False)
    response = await _send(clients, call, path, orjson.dumps(body), _json_headers(call))
    reply = orjson.loads(response.content)
    if step.options.protocol == "openai-chat":
        text = reply["choices"][0]["message"]["content"] or ""
    else:
        text = reply.get("text_output", "")
    return text_message(text, str(reply.get("model") or reply.get("model_name") or ""))


def _json_headers(call: Call) -> dict[str, str]:
    return {**call.headers, "content-type": "application/json"}


async def stream_llm(clients: ServiceClients, step: Step, call: Call, prompt: str) -> TextDeltas:
    """Open the LLM step's stream: the status is checked here (so a refused request fails like a
    non-streamed one); the returned iterator yields its deltas and closes the connection."""
    path, body = _llm_request(step, call, prompt, stream=True)
    response = await _send(clients, call, path, orjson.dumps(body), _json_headers(call), stream=True)

    async def deltas() -> TextDeltas:
        # The answer ends at [DONE] (or when the body does); an event that does not parse, or an
        # error event, fails the step: what came before it is not the whole answer.
        try:
            async for line in response.aiter_lines():
                data = event_data(line)
                if data is None:
                    continue
                if data == DONE:
                    break
                try:
                    event = read_event(data)
                except BadEvent as exc:
                    raise StepFailed(f"not a stream event: {exc}", HTTPStatus.BAD_GATEWAY) from None
                if event.error is not None:
                    raise StepFailed(event.error, HTTPStatus.BAD_GATEWAY)
                for text, finish_reason in event.deltas:
                    if text or finish_reason:
                        yield text, finish_reason
        except httpx.TimeoutException:
            raise BackendTimeout(f"the stream sent nothing for {call.timeout:g} s") from None
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"the stream from {call.address} broke: {exc}") from None
        finally:
            await response.aclose()

    return deltas()


__all__ = ["SAMPLING_KEYS", "Call", "ServiceClients", "StepFailed", "TextDeltas", "call_grpc", "call_llm", "call_rest", "sampling_of", "stream_llm"]
