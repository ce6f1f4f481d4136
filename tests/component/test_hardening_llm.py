"""Issue 18, the LLM predictor (OpenAI, generate, v2 on vLLM with the tiny random Llama): every
bad parameter is a 400 JSON naming the field on a connection that stays usable, the protocol's
own parameters never reach the engine, what is not supported is refused by name, and a dead
engine core makes the process exit so its supervisor restarts it."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest

from kubemind.processes import ServerProcess, start_server
from tests.component.llm_fixtures import (
    ENGINE_ARGS,
    ENGINE_ENV,
    ENGINE_READY_TIMEOUT,
    tiny_llama_dir,
)

MODEL = "tiny"
# The engine starts in about a minute alone; on a loaded CI machine its start counts against the
# first test.
pytestmark = pytest.mark.timeout(900)
COMPLETIONS, CHAT = "/openai/v1/completions", "/openai/v1/chat/completions"
GENERATE, GENERATE_STREAM, INFER = f"/v2/models/{MODEL}/generate", f"/v2/models/{MODEL}/generate_stream", f"/v2/models/{MODEL}/infer"
MESSAGES = [{"role": "user", "content": "hi"}]
OUT_OF_VOCABULARY = 99_999  # the tiny Llama has 512 tokens


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = Path(tmp_path_factory.mktemp("vllm-hardening")) / "server.log"
    args = ["--model_name", MODEL, "--model_dir", str(tiny_llama_dir()), "--max_model_len", "256", *ENGINE_ARGS]
    process = start_server("kubemind_predictors.vllm", args, log, env=ENGINE_ENV, ready_timeout=ENGINE_READY_TIMEOUT)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=120) as client:
        yield client


def infer_body(text: str, **parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1], "data": [text]}]}
    if parameters:
        body["parameters"] = parameters
    return body


# (path, body, the field the error must name)
BAD_REQUESTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "prompt-null": (COMPLETIONS, {"model": MODEL, "prompt": None}, "prompt"),
    "messages-null": (CHAT, {"model": MODEL, "messages": None}, "messages"),
    "prompt-empty": (COMPLETIONS, {"model": MODEL, "prompt": ""}, "prompt"),
    "prompt-empty-list": (COMPLETIONS, {"model": MODEL, "prompt": []}, "prompt"),
    "prompt-oov-token": (COMPLETIONS, {"model": MODEL, "prompt": [OUT_OF_VOCABULARY]}, "prompt"),
    "logit-bias-oov": (COMPLETIONS, {"model": MODEL, "prompt": "hi", "logit_bias": {str(OUT_OF_VOCABULARY): 1}}, "logit_bias"),
    "min-p-2": (COMPLETIONS, {"model": MODEL, "prompt": "hi", "min_p": 2}, "min_p"),
    "stop-empty-string": (COMPLETIONS, {"model": MODEL, "prompt": "hi", "stop": [""]}, "stop"),
    "bad-json-schema": (
        CHAT,
        {"model": MODEL, "messages": MESSAGES, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}},
        "response_format",
    ),
    "generate-empty-text": (GENERATE, {"text_input": ""}, "text_input"),
    "generate-oov-allowed-tokens": (GENERATE, {"text_input": "hi", "parameters": {"allowed_token_ids": [OUT_OF_VOCABULARY]}}, "allowed_token_ids"),
    "generate-min-over-max": (GENERATE, {"text_input": "hi", "parameters": {"min_tokens": 10, "max_tokens": 2}}, "min_tokens"),
    "generate-prompt-logprobs-100": (GENERATE, {"text_input": "hi", "parameters": {"prompt_logprobs": 100}}, "prompt_logprobs"),
    "generate-n-5": (GENERATE, {"text_input": "hi", "parameters": {"n": 5}}, "n"),
    "generate-bad-words-int": (GENERATE, {"text_input": "hi", "parameters": {"bad_words": [5]}}, "bad_words"),
    "generate-bad-regex": (GENERATE, {"text_input": "hi", "parameters": {"structured_outputs": {"regex": "(("}}}, "structured_outputs"),
    "infer-empty-text": (INFER, infer_body(""), "text_input"),
    "infer-n-5": (INFER, infer_body("hi", n=5), "n"),
    "infer-min-over-max": (INFER, infer_body("hi", min_tokens=10, max_tokens=2), "min_tokens"),
    "infer-oov-allowed-tokens": (INFER, infer_body("hi", allowed_token_ids=[OUT_OF_VOCABULARY]), "allowed_token_ids"),
    "infer-prompt-logprobs-100": (INFER, infer_body("hi", prompt_logprobs=100), "prompt_logprobs"),
    "infer-bad-words-int": (INFER, infer_body("hi", bad_words=[5]), "bad_words"),
    "infer-bad-regex": (INFER, infer_body("hi", structured_outputs={"regex": "(("}), "structured_outputs"),
    "unknown-role": (CHAT, {"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}, "role"),
    "image-part": (
        CHAT,
        {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]},
        "image_url",
    ),
    "audio-part": (
        CHAT,
        {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]},
        "input_audio",
    ),
    "tool-choice": (
        CHAT,
        {"model": MODEL, "messages": MESSAGES, "tool_choice": "required", "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        "tool",
    ),
    "tool-choice-without-tools": (CHAT, {"model": MODEL, "messages": MESSAGES, "tool_choice": "required"}, "tool_choice"),
}


@pytest.mark.parametrize(("path", "body", "field"), BAD_REQUESTS.values(), ids=list(BAD_REQUESTS))
def test_a_bad_parameter_is_a_400_json_naming_the_field(http: httpx.Client, path: str, body: dict[str, Any], field: str) -> None:
    reply = http.post(path, json=body)
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    if path.startswith("/openai/"):
        assert set(error) == {"message", "type", "param", "code"} and error["code"] == "400"
        message = f"{error['param']} {error['message']}"
    else:
        assert isinstance(error, str)
        message = error
    assert field in message, message
    assert "Traceback" not in message
    # The keep-alive connection is still good: the next request on it is served.
    assert http.get("/v2/health/live").status_code == 200


GRPC_BAD_PARAMETERS: dict[str, tuple[str, dict[str, int], str]] = {
    "empty-text": ("", {}, "text_input"),
    "n-5": ("hi", {"n": 5}, "n"),
    "min-over-max": ("hi", {"min_tokens": 10, "max_tokens": 2}, "min_tokens"),
    "prompt-logprobs-100": ("hi", {"prompt_logprobs": 100}, "prompt_logprobs"),
}


@pytest.mark.parametrize(("text", "parameters", "field"), GRPC_BAD_PARAMETERS.values(), ids=list(GRPC_BAD_PARAMETERS))
def test_a_bad_parameter_over_grpc_is_invalid_argument_naming_the_field(
    server: ServerProcess, text: str, parameters: dict[str, int], field: str
) -> None:
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    request = pb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="text_input", datatype="BYTES", shape=[1]).contents.bytes_contents.append(text.encode())
    for key, value in parameters.items():
        request.parameters[key].int64_param = value
    with grpc.insecure_channel(server.grpc_address) as channel, pytest.raises(grpc.RpcError) as caught:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=120)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert field in str(caught.value.details())


def test_generate_stream_with_a_bad_parameter_fails_before_the_first_byte(http: httpx.Client) -> None:
    with http.stream("POST", GENERATE_STREAM, json={"text_input": "hi", "parameters": {"min_tokens": 10, "max_tokens": 2}}) as reply:
        assert reply.status_code == 400
        assert reply.headers["content-type"] == "application/json"
        assert "min_tokens" in json.loads(reply.read())["error"]


def test_protocol_parameters_never_reach_the_engine(server: ServerProcess) -> None:
    """The stock tritonclient.http client sends binary_data_output; it is no sampling parameter."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
    text = httpclient.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hello"], dtype=np.object_))
    result = client.infer(MODEL, [text], parameters={"max_tokens": 2})
    assert result.as_numpy("text_output").shape == (1,)
    reply = httpx.post(f"{server.http_url}{INFER}", json=infer_body("hi", binary_data_output=False, max_tokens=2), timeout=120)
    assert reply.status_code == 200, reply.text


def test_the_openai_model_object(http: httpx.Client) -> None:
    reply = http.get(f"/openai/v1/models/{MODEL}")
    assert reply.status_code == 200
    assert reply.json()["id"] == MODEL and reply.json()["object"] == "model"
    missing = http.get("/openai/v1/models/nosuch")
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "model"


# -- a bounded schemathesis run over OpenAI's own OpenAPI file --------------------------------------
# Requests generated from ../shared/specs/openai for chat, completions, embeddings and models,
# valid or not: none may get a 5xx. `model` is pinned to the served one so requests reach the
# engine, and generations are capped at 8 tokens (longer ones prove nothing more on two cores).
# `make test-fuzz` (the `fuzz` marker) runs the same test with KUBEMIND_FUZZ_EXAMPLES per operation.
OPENAI_SPEC = Path(__file__).parents[3] / "shared" / "specs" / "openai" / "openapi-2.0.0.yaml"
SCHEMATHESIS_EXAMPLES = 8
FUZZ_EXAMPLES = int(os.environ.get("KUBEMIND_FUZZ_EXAMPLES", "2000"))

if OPENAI_SPEC.is_file():
    import schemathesis
    from hypothesis import HealthCheck, settings
    from schemathesis.checks import not_a_server_error

    def openai_spec_test(max_examples: int) -> Callable[..., None]:
        """No 5xx over the spec's chat, completions, embeddings and models operations,
        `max_examples` cases each; the server stays up throughout."""
        openai_schema = schemathesis.openapi.from_path(
            OPENAI_SPEC,
            config=schemathesis.Config.from_dict(
                {"generation": {"mode": "all", "max-examples": max_examples}, "seed": 20261202}
            ),
        ).include(path_regex=r"^/(chat/completions|completions|embeddings|models|models/\{model\})$")

        @openai_schema.parametrize()
        @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def test(case: schemathesis.Case, server: ServerProcess) -> None:
            if isinstance(case.body, dict) and "model" in case.body:
                case.body["model"] = MODEL
                for key in ("max_tokens", "max_completion_tokens"):
                    if isinstance(case.body.get(key), int) and case.body[key] > 8:
                        case.body[key] = 8
            if case.path_parameters and "model" in case.path_parameters:
                case.path_parameters["model"] = MODEL
            response = case.call(base_url=f"{server.http_url}/openai/v1", timeout=120)
            case.validate_response(response, checks=[not_a_server_error])
            assert server.process.poll() is None, "the server exited"

        return test

    test_openai_spec_gets_no_5xx = openai_spec_test(SCHEMATHESIS_EXAMPLES)
    test_openai_spec_gets_no_5xx_extended = pytest.mark.timeout(3600)(pytest.mark.fuzz(openai_spec_test(FUZZ_EXAMPLES)))


def test_zz_a_killed_engine_core_makes_the_process_exit_for_a_restart(server: ServerProcess) -> None:
    """Kubernetes and `kubemind up` restart a process that exits; one that stays live with a
    dead engine would answer 503 forever."""
    parent = psutil.Process(server.process.pid)
    cores = [child for child in parent.children(recursive=True) if "EngineCore" in " ".join(child.cmdline()) or "EngineCore" in child.name()]
    assert cores, [c.cmdline() for c in parent.children(recursive=True)]
    # A stream in flight when the core dies ends with an error event and [DONE], not a cut
    # (the finding: in-flight requests got a text/plain 500).
    events: list[str] = []
    streaming = threading.Event()

    def stream() -> None:
        body = {"model": MODEL, "messages": MESSAGES, "stream": True, "max_tokens": 240, "min_tokens": 240}
        with httpx.stream("POST", f"{server.http_url}{CHAT}", json=body, timeout=120) as reply:
            for line in reply.iter_lines():
                if line.startswith("data: "):
                    events.append(line.removeprefix("data: "))
                    streaming.set()

    reader = threading.Thread(target=stream, daemon=True)
    reader.start()
    assert streaming.wait(120), events
    for core in cores:
        os.kill(core.pid, signal.SIGKILL)
    code = server.process.wait(timeout=120)
    reader.join(30)
    assert code != 0
    assert events[-1] == "[DONE]", events[-3:]
    assert "error" in json.loads(events[-2]), events[-3:]
    log = server.log_path.read_text(errors="replace")
    assert "cannot serve any more: the vLLM engine core has died" in log
    assert not [p for p in psutil.process_iter(["pid", "ppid"]) if p.info["ppid"] == parent.pid]


def test_sigterm_with_16_streams_in_flight_ends_each_with_a_final_event(tmp_path: Path) -> None:
    """Stop accepting, finish or end every stream with a final event and `[DONE]`, then exit 0
    without a traceback (the finding: 13 of 16 streams cut at the grace limit, 13 tracebacks)."""
    import asyncio

    args = ["--model_name", MODEL, "--model_dir", str(tiny_llama_dir()), "--max_model_len", "256", "--grace_period_seconds", "1", *ENGINE_ARGS]
    process = start_server("kubemind_predictors.vllm", args, tmp_path / "server.log", env=ENGINE_ENV, ready_timeout=ENGINE_READY_TIMEOUT)
    body = {"model": MODEL, "messages": MESSAGES, "stream": True, "max_tokens": 240, "min_tokens": 240}

    async def one_stream(client: httpx.AsyncClient, started: asyncio.Event) -> list[str]:
        events = []
        async with client.stream("POST", CHAT, json=body) as reply:
            assert reply.status_code == 200
            async for line in reply.aiter_lines():
                if line.startswith("data: "):
                    events.append(line.removeprefix("data: "))
                    started.set()
        return events

    async def stop_while_streaming() -> list[list[str]]:
        async with httpx.AsyncClient(base_url=process.http_url, timeout=120) as client:
            flags = [asyncio.Event() for _ in range(16)]
            streams = [asyncio.create_task(one_stream(client, flag)) for flag in flags]
            await asyncio.wait_for(asyncio.gather(*(flag.wait() for flag in flags)), timeout=300)
            os.kill(process.process.pid, signal.SIGTERM)
            return list(await asyncio.wait_for(asyncio.gather(*streams), timeout=120))

    try:
        streams = asyncio.run(stop_while_streaming())
        code = process.process.wait(timeout=120)
    finally:
        process.stop()
    log = process.log_path.read_text(errors="replace")
    for events in streams:
        assert events[-1] == "[DONE]", events[-3:]
        last = json.loads(events[-2])
        # a stream either finished in the drain period or ended with the shutdown's error event
        assert last.get("choices", [{}])[0].get("finish_reason") == "length" or "shutting down" in last["error"]["message"], last
    # 240 engine steps take seconds on a CPU: the 0.8 s drain period ends streams still running
    assert any("error" in json.loads(events[-2]) for events in streams)
    assert code == 0, log[-2000:]
    assert "Traceback" not in log, log[-4000:]
