"""Issue 18: SIGTERM (server.stop) with streams in flight ends every stream with a final event
within the grace period, instead of cutting them at the limit with tracebacks."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
from kserve.protocol.infer_type import InferRequest, InferResponse

from kubemind.model import KubemindModel
from kubemind.server import KubemindServer
from kubemind.settings import ComponentSettings


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


async def read_stream(client: httpx.AsyncClient, url: str, started: asyncio.Event) -> list[dict[str, Any]]:
    events = []
    async with client.stream("POST", url, json={"text_input": "go"}) as reply:
        assert reply.status_code == 200
        async for line in reply.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
                started.set()
    return events


async def test_streams_in_flight_at_shutdown_end_with_a_final_event(caplog: pytest.LogCaptureFixture) -> None:
    settings = ComponentSettings(host="127.0.0.1", http_port=0, grpc_port=0, grace_period_seconds=3, log_requests=False)
    server = KubemindServer(settings, [EndlessGenerator()])
    await server.start()
    url = f"http://127.0.0.1:{server.http_port}/v2/models/endless/generate_stream"
    async with httpx.AsyncClient(timeout=60) as client:
        flags = [asyncio.Event() for _ in range(8)]
        readers = [asyncio.create_task(read_stream(client, url, flag)) for flag in flags]
        await asyncio.wait_for(asyncio.gather(*(flag.wait() for flag in flags)), timeout=60)
        await asyncio.wait_for(server.stop(), timeout=60)
        streams = await asyncio.wait_for(asyncio.gather(*readers), timeout=60)
    for events in streams:
        assert events[0]["text_output"] == "word "
        assert events[-1] == {"error": "the server is shutting down: the stream was ended before it finished"}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
