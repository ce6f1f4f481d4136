"""The one reader of OpenAI / OIP generate stream events, and its two readers' policies: a router
step stops at `[DONE]` and fails on a bad event; the drift service skips a bad event."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import orjson
import pytest

from kubemind.drift.features import assembled_stream
from kubemind.protocol.sse import (
    DONE,
    SSE_DONE,
    BadEvent,
    StreamEvent,
    encode_event,
    event_data,
    read_event,
)
from kubemind_transformers.router.graph import Protocol, Step, StepOptions
from kubemind_transformers.router.steps import Call, ServiceClients, StepFailed, stream_llm


def _chunk(content: str | None = None, finish: str | None = None, **extra: object) -> dict[str, object]:
    delta = {} if content is None else {"content": content}
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def test_an_openai_chunk_says_its_delta_finish_reason_and_usage() -> None:
    event = read_event(orjson.dumps(_chunk("Hel", None)))
    assert event == StreamEvent("openai", (("Hel", None),))
    last = read_event(orjson.dumps(_chunk(None, "stop", usage={"completion_tokens": 3})))
    assert last.deltas == (("", "stop"),) and last.usage == {"completion_tokens": 3}
    # A completion (not chat) chunk carries `text`; several choices, one delta each.
    completion = read_event('{"choices": [{"text": "a", "index": 0}, {"text": "b", "index": 1, "finish_reason": "length"}]}')
    assert completion.deltas == (("a", None), ("b", "length")) and completion.text == "ab"


def test_a_generate_event_says_its_text_output_and_an_error_event_its_message() -> None:
    assert read_event('{"model_name": "m", "text_output": "hi", "finish_reason": "stop"}') == StreamEvent("generate", (("hi", "stop"),))
    assert read_event('{"error": "model \'m\' is not ready"}') == StreamEvent(None, error="model 'm' is not ready")
    openai_error = read_event('{"error": {"message": "boom", "type": "InternalServerError", "code": 500}}')
    assert openai_error.shape is None and openai_error.error == "boom"


@pytest.mark.parametrize("data", ["{not json", "[1, 2]", '"text"', '{"choices": [1]}', '{"choices": {"text": "x"}}'])
def test_data_that_is_not_a_stream_event_is_a_bad_event(data: str) -> None:
    with pytest.raises(BadEvent):
        read_event(data)


def test_what_the_pipeline_writes_reads_back() -> None:
    event = {"model_name": "m", "text_output": "zwölf", "finish_reason": "stop"}
    (line, blank, end) = encode_event(event).decode().split("\n")
    assert (blank, end) == ("", "")
    data = event_data(line)
    assert data is not None and read_event(data).deltas == (("zwölf", "stop"),)
    assert event_data(SSE_DONE.strip()) == DONE
    assert event_data("") is None and event_data(": keep-alive") is None and event_data("event: message") is None


def test_the_drift_service_skips_a_bad_event_and_adds_up_the_others() -> None:
    body = b"".join([
        encode_event(_chunk("Hello")),
        b"data: {broken\n\n",
        encode_event(_chunk(" world", "stop")),
        encode_event(_chunk(None, None, usage={"completion_tokens": 2})),
        SSE_DONE.encode(),
    ])  # fmt: skip
    assert assembled_stream(body) == {"choices": [{"message": {"content": "Hello world"}}], "usage": {"completion_tokens": 2}}
    generate = encode_event({"text_output": "a "}) + b"data: [1]\n\n" + encode_event({"text_output": "b"})
    assert assembled_stream(generate) == {"text_output": "a b"}
    assert assembled_stream(encode_event({"error": "boom"})) is None


class _CannedStream:
    """A real HTTP server answering every POST with one fixed SSE body."""

    def __init__(self, body: bytes) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def canned() -> Iterator[list[_CannedStream]]:
    servers: list[_CannedStream] = []
    yield servers
    for server in servers:
        server.close()


async def _router_deltas(canned: list[_CannedStream], body: bytes, protocol: Protocol = "openai-chat") -> list[tuple[str, str | None]]:
    server = _CannedStream(body)
    canned.append(server)
    clients = ServiceClients(retry_budget=0)
    clients.start([])
    try:
        step = Step("llm", "root.steps[0] 'llm'", service="llm", options=StepOptions(protocol=protocol))
        deltas = await stream_llm(clients, step, Call(server.address, {"x-request-id": "r-1"}, 10.0), "hi")
        return [delta async for delta in deltas]
    finally:
        await clients.close()


async def test_a_router_step_stops_at_done(canned: list[_CannedStream]) -> None:
    body = b"".join([
        encode_event(_chunk("")),  # the role chunk: no text yet, not passed on
        encode_event(_chunk("Hi")),
        encode_event(_chunk(None, "stop")),
        SSE_DONE.encode(),
        encode_event(_chunk("after the end")),
    ])  # fmt: skip
    assert await _router_deltas(canned, body) == [("Hi", None), ("", "stop")]
    generate = encode_event({"text_output": "a", "finish_reason": None}) + encode_event({"text_output": "b", "finish_reason": "stop"})
    assert await _router_deltas(canned, generate, "generate") == [("a", None), ("b", "stop")]


@pytest.mark.parametrize(
    ("bad", "message"),
    [(b"data: {broken\n\n", "not a stream event"), (encode_event({"error": {"message": "engine died"}}), "engine died")],
)
async def test_a_router_step_fails_on_a_bad_or_error_event(canned: list[_CannedStream], bad: bytes, message: str) -> None:
    body = encode_event(_chunk("Hi")) + bad + encode_event(_chunk(" there", "stop")) + SSE_DONE.encode()
    with pytest.raises(StepFailed, match=message) as failed:
        await _router_deltas(canned, body)
    assert failed.value.status == 502
