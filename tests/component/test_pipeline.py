"""Every route runs through the one request pipeline: v2 REST and gRPC, OpenAI, the OIP generate
extension, v1 and the routes a model declares all echo `x-request-id`, move the request counter,
write one access-log line, and answer a bad request in their protocol's error shape naming the
field. A failed background start makes the server exit non-zero."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from kserve.protocol.infer_type import InferRequest, InferResponse

from kubemind.codecs import NumpyOutput
from kubemind.errors import OPENAI, V1, InvalidInput
from kubemind.model import KubemindModel, TensorSpec
from kubemind.protocol.pipeline import EventStream, Route, RouteCall
from kubemind.server import KubemindServer, serve_until_signalled
from kubemind.settings import ComponentSettings
from kubemind.telemetry import ACCESS_LOGGER


class EchoGenerator(KubemindModel):
    """A text generator that echoes its prompt, declaring an OpenAI and a v1 route: it stands in
    for an LLM so the pipeline itself is what these tests exercise."""

    def __init__(self) -> None:
        super().__init__("echo", inputs=[TensorSpec("text_input", "BYTES", (-1,))], outputs=[TensorSpec("text_output", "BYTES", (-1,))])
        self.aliases = ("echo-openai",)

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        import numpy as np

        texts = payload.inputs[0].as_numpy()
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[NumpyOutput("text_output", np.asarray(texts), "BYTES")])

    async def generate_text(self, prompt: str, options: Mapping[str, Any]) -> str:
        _check(options)
        return prompt

    async def stream_text(self, prompt: str, options: Mapping[str, Any]) -> AsyncIterator[tuple[str, str | None]]:
        _check(options)

        async def deltas() -> AsyncIterator[tuple[str, str | None]]:
            words = prompt.split(" ")
            for index, word in enumerate(words):
                yield word + (" " if index < len(words) - 1 else ""), "stop" if index == len(words) - 1 else None

        return deltas()

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/openai/v1/completions", "openai_completions", self._completion, protocol=OPENAI, model_in_body=True),
            Route("POST", "/v1/models/{model_name}:predict", "v1_predict", self._v1, protocol=V1),
        ]

    async def _completion(self, call: RouteCall) -> dict[str, Any] | EventStream:
        prompt = call.body.get("prompt")
        if not isinstance(prompt, str):
            raise InvalidInput("prompt: must be a string", param="prompt")
        if call.body.get("stream"):

            async def events() -> AsyncIterator[dict[str, Any] | str]:
                yield {"choices": [{"text": prompt}]}
                yield "data: [DONE]\n\n"

            return EventStream(events())
        return {"object": "text_completion", "model": call.body["model"], "choices": [{"text": prompt}]}

    async def _v1(self, call: RouteCall) -> dict[str, Any]:
        instances = call.body.get("instances") if isinstance(call.body, dict) else None
        if not isinstance(instances, list):
            raise InvalidInput("instances: required, a list")
        return {"predictions": instances}


def _check(options: Mapping[str, Any]) -> None:
    if "max_tokens" in options and not isinstance(options["max_tokens"], int):
        raise InvalidInput("max_tokens: must be an integer", param="max_tokens")


@dataclass(frozen=True)
class Case:
    endpoint: str
    path: str
    good: Any
    bad: Any
    bad_field: str
    openai_shape: bool = False


TEXT = {"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["a b c"]}]}
CASES = [
    Case("infer", "/v2/models/echo/infer", TEXT, {"inputs": [{"name": "nope", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}, "nope"),
    Case("generate", "/v2/models/echo/generate", {"text_input": "a b c"}, {"text_input": ""}, "text_input"),
    Case("generate_stream", "/v2/models/echo/generate_stream", {"text_input": "a b c"}, {"text_input": "x", "parameters": {"max_tokens": "many"}}, "max_tokens"),
    Case("openai_completions", "/openai/v1/completions", {"model": "echo-openai", "prompt": "a b c"}, {"model": "echo", "prompt": None}, "prompt", True),
    Case("v1_predict", "/v1/models/echo:predict", {"instances": [1, 2]}, {"instance": []}, "instances"),
]


@pytest.fixture
async def server() -> AsyncIterator[KubemindServer]:
    settings = ComponentSettings(host="127.0.0.1", http_port=0, grpc_port=0, grace_period_seconds=0)
    running = KubemindServer(settings, [EchoGenerator()])
    await running.start()
    yield running
    await running.stop()


def _count(server: KubemindServer, endpoint: str, code: str) -> float:
    value = server.metrics.registry.get_sample_value(
        "kubemind_requests_total", {"model": "echo", "endpoint": endpoint, "protocol": "rest", "code": code, "revision": ""}
    )
    return value or 0.0


def _access_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> list[dict[str, Any]]:
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
    return [line for line in lines if line["request_id"] == request_id]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.endpoint)
async def test_every_route_runs_the_pipeline(server: KubemindServer, case: Case, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    url = f"http://127.0.0.1:{server.http_port}{case.path}"
    before_ok, before_bad = _count(server, case.endpoint, "200"), _count(server, case.endpoint, "400")
    async with httpx.AsyncClient(timeout=10) as client:
        good = await client.post(url, json=case.good, headers={"x-request-id": f"good-{case.endpoint}"})
        assert good.status_code == 200, good.text
        assert good.headers["x-request-id"] == f"good-{case.endpoint}"
        bad = await client.post(url, json=case.bad)
    assert bad.status_code == 400
    generated_id = bad.headers["x-request-id"]
    assert len(generated_id) == 32  # generated when the client sent none
    error = bad.json()["error"]
    if case.openai_shape:
        assert error["param"] == case.bad_field and case.bad_field in error["message"] and error["code"] == "400"
    else:
        assert isinstance(error, str) and case.bad_field in error
    assert _count(server, case.endpoint, "200") == before_ok + 1
    assert _count(server, case.endpoint, "400") == before_bad + 1
    assert len(_access_lines(caplog, f"good-{case.endpoint}")) == 1
    [line] = _access_lines(caplog, generated_id)
    assert line["status"] == 400 and case.bad_field in line["error"]


async def test_streams_are_sse_and_end_in_one_access_line(server: KubemindServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    async with httpx.AsyncClient(timeout=10) as client:
        reply = await client.post(
            f"http://127.0.0.1:{server.http_port}/v2/models/echo/generate_stream",
            json={"text_input": "a b c"},
            headers={"x-request-id": "stream-1"},
        )
    events = [json.loads(line[len("data: "):]) for line in reply.text.splitlines() if line.startswith("data: ")]
    assert "".join(e["text_output"] for e in events) == "a b c"
    assert events[-1]["finish_reason"] == "stop" and reply.headers["x-request-id"] == "stream-1"
    assert len(_access_lines(caplog, "stream-1")) == 1


async def test_openai_unknown_model_and_model_list(server: KubemindServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10) as client:
        missing = await client.post("/openai/v1/completions", json={"model": "gpt-4", "prompt": "x"})
        listed = await client.get("/openai/v1/models")
        malformed = await client.post("/v1/models/echo:predict", content=b"{not json", headers={"content-type": "application/json"})
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "model"
    assert "Request for unknown model: 'gpt-4' is not found" in missing.json()["error"]["message"]
    assert [m["id"] for m in listed.json()["data"]] == ["echo", "echo-openai"]
    assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["error"]


async def test_grpc_infer_echoes_the_request_id_and_counts(server: KubemindServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="echo")
        request.inputs.add(name="text_input", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"hi")
        call = stub.ModelInfer(request, metadata=(("x-request-id", "grpc-1"),))
        reply = await call
        trailing = dict(await call.trailing_metadata())
    assert reply.raw_output_contents[0] == b"\x02\x00\x00\x00hi"
    assert trailing["x-request-id"] == "grpc-1"
    counted = server.metrics.registry.get_sample_value(
        "kubemind_requests_total", {"model": "echo", "endpoint": "ModelInfer", "protocol": "grpc", "code": "200", "revision": ""}
    )
    assert counted == 1


class FailingEngine(KubemindModel):
    """A model whose background engine start raises, like a vLLM engine that cannot load."""

    def __init__(self) -> None:
        super().__init__("broken")
        self.engine = True  # KServe's convention: start_engine runs in the background

    def load(self) -> bool:
        return False

    async def start_engine(self) -> None:
        raise RuntimeError("weights not found")

    def stop_engine(self) -> None:
        pass


async def test_a_failed_background_start_stops_the_server_with_an_error() -> None:
    settings = ComponentSettings(host="127.0.0.1", http_port=0, grpc_port=0, grace_period_seconds=0, log_requests=False)
    server = KubemindServer(settings, [FailingEngine()])
    code = await serve_until_signalled(server)
    assert code == 1
    assert isinstance(server.start_failure, RuntimeError)
