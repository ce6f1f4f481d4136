"""Issue 18: SIGTERM (server.stop) with streams in flight ends every stream with a final event
within the grace period, instead of cutting them at the limit with tracebacks: v2 generate
streams, OpenAI streams (the error event, then `[DONE]`) and gRPC ModelStreamInfer calls (a
"shutting down" error message, then the call ends with OK). A backend that fails after the
first byte ends the stream with its error as the final event too."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferRequest, InferResponse

from kubemind.errors import OPENAI, BackendUnavailable
from kubemind.model import KubemindModel
from kubemind.protocol import triton_extensions_pb2 as ext
from kubemind.protocol.pipeline import EventStream, Route, RouteCall
from kubemind.server import KubemindServer
from kubemind.settings import ComponentSettings

SHUTDOWN_MESSAGE = "the server is shutting down: the stream was ended before it finished"
Result = TypeVar("Result")


class EndlessGenerator(KubemindModel):
    """A text generator whose streams never finish on their own (a long generation)."""

    def __init__(self) -> None:
        super().__init__("endless")
        self.ready = True

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        raise NotImplementedError

    async def generate_text(self, prompt: str, options: Mapping[str, Any]) -> str:
        return prompt

    async def stream_text(self, prompt: str, options: Mapping[str, Any]) -> AsyncIterator[tuple[str, str | None]]:
        async def deltas() -> AsyncIterator[tuple[str, str | None]]:
            while True:
                yield "word ", None
                await asyncio.sleep(0.05)  # pacing of the generation, not synchronisation

        return deltas()

    def routes(self) -> list[Route]:
        chat = Route("POST", "/openai/v1/chat/completions", "openai_chat_completions", self._chat, protocol=OPENAI, model_in_body=True)
        return [chat]

    async def _chat(self, call: RouteCall) -> EventStream:
        async def chunks() -> AsyncIterator[dict[str, Any]]:
            async for text, _ in await self.stream_text("", {}):
                yield {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}

        return EventStream(chunks())


class FailingGenerator(EndlessGenerator):
    """A generator whose backend dies after the first delta (the engine lost mid-stream)."""

    async def stream_text(self, prompt: str, options: Mapping[str, Any]) -> AsyncIterator[tuple[str, str | None]]:
        async def deltas() -> AsyncIterator[tuple[str, str | None]]:
            yield "word ", None
            raise BackendUnavailable(ENGINE_LOST)

        return deltas()


ENGINE_LOST = "the vLLM engine cannot serve requests: the engine core died"


async def started_server(model: KubemindModel | None = None) -> KubemindServer:
    settings = ComponentSettings(host="127.0.0.1", http_port=0, grpc_port=0, grace_period_seconds=3, log_requests=False)
    server = KubemindServer(settings, [model or EndlessGenerator()])
    await server.start()
    return server


async def stop_while_streaming(
    server: KubemindServer, streams: int, stream: Callable[[asyncio.Event], Awaitable[Result]]
) -> list[Result]:
    """Open `streams` streams, stop the server once each has had its first event, and return what
    each stream received."""
    flags = [asyncio.Event() for _ in range(streams)]
    readers = [asyncio.create_task(stream(flag)) for flag in flags]  # type: ignore[arg-type]
    await asyncio.wait_for(asyncio.gather(*(flag.wait() for flag in flags)), timeout=60)
    await asyncio.wait_for(server.stop(), timeout=60)
    return list(await asyncio.wait_for(asyncio.gather(*readers), timeout=60))


async def read_stream(client: httpx.AsyncClient, url: str, body: dict[str, Any], started: asyncio.Event) -> list[Any]:
    """The stream's events: JSON objects, and the `[DONE]` marker as the string itself."""
    events: list[Any] = []
    async with client.stream("POST", url, json=body) as reply:
        assert reply.status_code == 200
        async for line in reply.aiter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                events.append(data if data == "[DONE]" else json.loads(data))
                started.set()
    return events


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


async def test_streams_in_flight_at_shutdown_end_with_a_final_event(caplog: pytest.LogCaptureFixture) -> None:
    server = await started_server()
    url = f"http://127.0.0.1:{server.http_port}/v2/models/endless/generate_stream"
    async with httpx.AsyncClient(timeout=60) as client:
        streams = await stop_while_streaming(server, 8, lambda flag: read_stream(client, url, {"text_input": "go"}, flag))
    for events in streams:
        assert events[0]["text_output"] == "word "
        assert events[-1] == {"error": SHUTDOWN_MESSAGE}
    no_errors_logged(caplog)


async def test_openai_streams_at_shutdown_end_with_an_error_event_then_done(caplog: pytest.LogCaptureFixture) -> None:
    server = await started_server()
    url = f"http://127.0.0.1:{server.http_port}/openai/v1/chat/completions"
    body = {"model": "endless", "messages": [{"role": "user", "content": "go"}], "stream": True}
    async with httpx.AsyncClient(timeout=60) as client:
        streams = await stop_while_streaming(server, 4, lambda flag: read_stream(client, url, body, flag))
    for events in streams:
        assert events[0]["choices"][0]["delta"] == {"content": "word "}
        assert events[-2]["error"]["message"] == SHUTDOWN_MESSAGE
        assert events[-1] == "[DONE]"
    no_errors_logged(caplog)


async def test_grpc_streams_at_shutdown_end_with_an_error_message_and_ok(caplog: pytest.LogCaptureFixture) -> None:
    """Two ModelStreamInfer calls with a streamed generation each: both get their tokens, then
    the shutdown's error message for the generation, then the call ends with OK (not CANCELLED)."""
    server = await started_server()
    # tritonclient's protos clash with kserve's in one process: the raw stub, sent as
    # tritonclient's stream_infer sends it (text_input and a BOOL stream input).
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    stream_infer = channel.stream_stream(
        "/inference.GRPCInferenceService/ModelStreamInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=ext.ModelStreamInferResponse.FromString,
    )
    request = pb.ModelInferRequest(model_name="endless")
    request.inputs.add(name="text_input", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[b"go"]))
    request.inputs.add(name="stream", datatype="BOOL", shape=[1], contents=pb.InferTensorContents(bool_contents=[True]))

    async def one_call(started: asyncio.Event) -> tuple[list[ext.ModelStreamInferResponse], grpc.StatusCode]:
        keep_sending = asyncio.Event()  # never set: the client keeps its side open, as a chat session would

        async def requests() -> AsyncIterator[pb.ModelInferRequest]:
            yield request
            await keep_sending.wait()

        call = stream_infer(requests())
        answers = []
        async for answer in call:
            answers.append(answer)
            started.set()
        return answers, await call.code()

    try:
        results = await stop_while_streaming(server, 2, one_call)
    finally:
        await channel.close()
    for answers, code in results:
        first = pb.ModelInferResponse.FromString(answers[0].infer_response)  # kept serialised by kubemind's proto
        assert first.raw_output_contents[0][4:] == b"word "
        assert answers[-1].error_message == SHUTDOWN_MESSAGE
        assert code == grpc.StatusCode.OK
    no_errors_logged(caplog)


async def test_an_error_after_the_first_byte_is_the_streams_final_event() -> None:
    """The 200 and the first event are already sent: the failure is the last event (v2: the
    error object; OpenAI: the error object, then `[DONE]`), not a connection cut."""
    server = await started_server(FailingGenerator())
    base = f"http://127.0.0.1:{server.http_port}"
    chat = {"model": "endless", "messages": [{"role": "user", "content": "go"}], "stream": True}
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            generate = await read_stream(client, f"{base}/v2/models/endless/generate_stream", {"text_input": "go"}, asyncio.Event())
            openai = await read_stream(client, f"{base}/openai/v1/chat/completions", chat, asyncio.Event())
            assert (await client.get(f"{base}/v2/health/live")).status_code == 200
    finally:
        await server.stop()
    assert generate[0]["text_output"] == "word "
    assert generate[-1] == {"error": ENGINE_LOST}
    assert openai[0]["choices"][0]["delta"] == {"content": "word "}
    assert openai[-2] == {"error": {"message": ENGINE_LOST, "type": "BackendUnavailable", "param": None, "code": "503"}}
    assert openai[-1] == "[DONE]"
