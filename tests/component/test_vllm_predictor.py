"""The vLLM predictor on the real engine with a tiny random Llama: the wiring, not the words."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from kubemind.processes import ServerProcess, start_server
from tests.component.llm_fixtures import (
    ENGINE_ARGS,
    ENGINE_ENV,
    ENGINE_READY_TIMEOUT,
    metric_value,
    tiny_llama_dir,
)

MODEL = "tiny"
MAX_MODEL_LEN = 256


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = Path(tmp_path_factory.mktemp("vllm")) / "server.log"
    args = ["--model_name", MODEL, "--model_dir", str(tiny_llama_dir())]
    args += ["--max_model_len", str(MAX_MODEL_LEN), *ENGINE_ARGS]
    process = start_server(
        "kubemind_predictors.vllm", args, log, env=ENGINE_ENV, ready_timeout=ENGINE_READY_TIMEOUT
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.http_url}/openai/v1", api_key="unused", max_retries=0)


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]


def test_completion_reports_text_and_usage(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=MODEL, prompt="Hello", max_tokens=8, temperature=0)
    assert reply.choices[0].finish_reason in ("length", "stop")
    assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 8
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_chat_uses_the_chat_template(client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0
    )
    plain = client.completions.create(model=MODEL, prompt="hi", max_tokens=4, temperature=0)
    assert chat.choices[0].message.role == "assistant"
    # the template wraps the message in <|im_start|>user ... <|im_start|>assistant
    assert chat.usage is not None and plain.usage is not None
    assert chat.usage.prompt_tokens > plain.usage.prompt_tokens


def test_n_and_logprobs(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model=MODEL, prompt="Hello", max_tokens=3, n=2, logprobs=2, temperature=1.0, seed=7
    )
    assert sorted(c.index for c in reply.choices) == [0, 1]
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.token_logprobs is not None
    assert len(logprobs.token_logprobs) == 3
    assert all(len(top) >= 2 for top in logprobs.top_logprobs or [])


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_streaming_equals_non_streaming_and_usage_comes_once(
    client: openai.OpenAI, api: str
) -> None:
    common = {"model": MODEL, "max_tokens": 12, "temperature": 0, "seed": 1}
    if api == "chat":
        messages = [{"role": "user", "content": "Tell me about Paris"}]
        whole = client.chat.completions.create(messages=messages, **common)  # type: ignore[call-overload]
        chunks = list(
            client.chat.completions.create(
                messages=messages, stream=True, stream_options={"include_usage": True}, **common
            )  # type: ignore[call-overload]
        )
        whole_text = whole.choices[0].message.content
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        whole = client.completions.create(prompt="Tell me about Paris", **common)  # type: ignore[call-overload]
        chunks = list(
            client.completions.create(
                prompt="Tell me about Paris",
                stream=True,
                stream_options={"include_usage": True},
                **common,
            )  # type: ignore[call-overload]
        )
        whole_text = whole.choices[0].text
        streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    assert streamed == whole_text
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1
    assert usage_chunks[0].usage == whole.usage


def test_sixteen_concurrent_streams_all_complete(server: ServerProcess) -> None:
    async def one(aclient: openai.AsyncOpenAI, i: int) -> int:
        stream = await aclient.completions.create(
            model=MODEL,
            prompt=f"stream {i}",
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        usage = None
        async for chunk in stream:
            usage = chunk.usage or usage
        assert usage is not None
        return usage.completion_tokens

    async def all_streams() -> list[int]:
        aclient = openai.AsyncOpenAI(base_url=f"{server.http_url}/openai/v1", api_key="unused")
        async with aclient:
            return await asyncio.gather(*(one(aclient, i) for i in range(16)))

    assert asyncio.run(all_streams()) == [16] * 16


@pytest.mark.parametrize(
    ("route", "body", "status", "named"),
    [
        ("completions", {"model": "no-such-model", "prompt": "x"}, 404, "no-such-model"),
        ("completions", {"model": MODEL, "prompt": "x", "max_tokens": -1}, 400, "max_tokens"),
        ("completions", {"model": MODEL, "prompt": "x", "temperature": "hot"}, 400, "temperature"),
        ("chat/completions", {"model": MODEL, "messages": "hello"}, 400, "messages"),
        ("completions", {"model": MODEL, "prompt": "Paris " * 400}, 400, "max_model_len"),
        ("completions", {"model": MODEL, "prompt": None}, 400, "prompt"),
        ("completions", {"model": MODEL, "prompt": ""}, 400, "prompt"),
        ("completions", {"model": MODEL, "prompt": [99999999]}, 400, "out of vocabulary"),
        ("completions", {"model": MODEL, "prompt": "x", "min_p": 2}, 400, "min_p"),
        ("completions", {"model": MODEL, "prompt": "x", "stop": [""]}, 400, "stop"),
        ("completions", {"model": MODEL, "prompt": "x", "logit_bias": {"99999999": 1}}, 400, "logit_bias"),
        ("chat/completions", {"model": MODEL, "messages": None}, 400, "InvalidInput"),
        ("../../v2/models/tiny/generate", {"text_input": ""}, 400, "text_input"),
        ("../../v2/models/tiny/generate", {"text_input": "x", "parameters": {"n": 5}}, 400, "n:"),
        ("../../v2/models/tiny/generate", {"text_input": "x", "parameters": {"bad_words": [5]}}, 400, "bad_words"),
        ("../../v2/models/tiny/generate_stream", {"text_input": "x", "parameters": {"min_p": 2}}, 400, "min_p"),
        ("../../v2/models/tiny/generate_stream", {"text_input": "x", "parameters": {"min_tokens": 9, "max_tokens": 2}}, 400, "min_tokens"),
    ],
    ids=[
        "unknown-model",
        "max-tokens-negative",
        "temperature-hot",
        "messages-not-list",
        "prompt-too-long",
        "prompt-null",
        "prompt-empty",
        "token-out-of-vocabulary",
        "min-p-2",
        "stop-empty-string",
        "logit-bias-out-of-vocabulary",
        "messages-null",
        "generate-empty-text",
        "generate-n-5",
        "generate-bad-words-ints",
        "generate-stream-min-p",
        "generate-stream-min-over-max",
    ],
)
def test_bad_requests_name_the_problem(
    server: ServerProcess, route: str, body: dict[str, object], status: int, named: str
) -> None:
    url = httpx.URL(f"{server.http_url}/openai/v1/{route}")
    with httpx.Client(timeout=30) as client:  # one keep-alive connection: an error must not drop it
        reply = client.post(url.copy_with(path=str(Path(url.path).resolve())), json=body)
        assert reply.status_code == status, reply.text
        assert named in reply.text
        assert reply.headers["content-type"] == "application/json"
        assert client.get(f"{server.http_url}/v2/health/live").status_code == 200


def test_v2_infer_text_input_to_text_output(server: ServerProcess) -> None:
    body = {
        "inputs": [{"name": "text_input", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}],
        "parameters": {"max_tokens": 3, "temperature": 0},
    }
    reply = httpx.post(f"{server.http_url}/v2/models/{MODEL}/infer", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    (output,) = reply.json()["outputs"]
    assert output["name"] == "text_output" and output["datatype"] == "BYTES"
    assert output["shape"] == [2] and all(isinstance(t, str) for t in output["data"])


def test_generate_and_generate_stream_agree(server: ServerProcess) -> None:
    body = {"text_input": "Hello", "parameters": {"max_tokens": 6, "temperature": 0}}
    whole = httpx.post(f"{server.http_url}/v2/models/{MODEL}/generate", json=body, timeout=60)
    assert whole.status_code == 200, whole.text
    import json

    with httpx.stream(
        "POST", f"{server.http_url}/v2/models/{MODEL}/generate_stream", json=body, timeout=60
    ) as stream:
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
    assert "".join(e["text_output"] for e in events) == whole.json()["text_output"]
    assert events[-1]["finish_reason"] == "length"
    bad = httpx.post(
        f"{server.http_url}/v2/models/{MODEL}/generate",
        json={"text_input": "x", "parameters": {"top_p": 5}},
        timeout=30,
    )
    assert bad.status_code == 400 and "top_p" in bad.text


def test_client_disconnect_aborts_the_engine_request(server: ServerProcess) -> None:
    metrics_url = f"{server.http_url}/metrics"
    generated_before = metric_value(httpx.get(metrics_url).text, "vllm:generation_tokens_total")
    max_tokens = MAX_MODEL_LEN - 16
    body = {
        "model": MODEL,
        "prompt": "Hi",
        "max_tokens": max_tokens,
        "stream": True,
        "ignore_eos": True,
    }
    with httpx.stream(
        "POST", f"{server.http_url}/openai/v1/completions", json=body, timeout=60
    ) as r:
        lines = r.iter_lines()
        for _ in range(3):
            next(lines)
        running = metric_value(httpx.get(metrics_url).text, "vllm:num_requests_running")
        assert running == 1
    # leaving the block closed the connection mid-stream
    deadline = time.monotonic() + 15
    while metric_value(httpx.get(metrics_url).text, "vllm:num_requests_running") > 0:
        assert time.monotonic() < deadline, "the engine kept running the abandoned request"
        time.sleep(0.1)
    generated = metric_value(httpx.get(metrics_url).text, "vllm:generation_tokens_total")
    assert generated - generated_before < max_tokens


def test_kv_cache_size_is_the_setting(server: ServerProcess) -> None:
    """--kv_cache_space 1 (GiB) is what vLLM allocated; the test environment has no VLLM_CPU_KVCACHE_SPACE."""
    exposition = httpx.get(f"{server.http_url}/metrics").text
    (info,) = [line for line in exposition.splitlines() if line.startswith("vllm:cache_config_info{")]
    assert f'kv_cache_memory_bytes="{1024**3}"' in info


def test_health_asks_the_engine(server: ServerProcess) -> None:
    assert httpx.get(f"{server.http_url}/v2/models/{MODEL}/ready").status_code == 200


def test_triton_stream_infer_streams_tokens_like_tritons_vllm_backend(server: ServerProcess) -> None:
    """tritonclient.grpc's start_stream/async_stream_infer, unchanged: decoupled text_output
    chunks whose concatenation is the non-streamed answer, the last one flagged final."""
    probe = Path(__file__).with_name("triton_llm_stream_probe.py")
    completed = subprocess.run(
        [sys.executable, str(probe), server.grpc_address, MODEL], capture_output=True, text=True, timeout=180
    )
    assert completed.returncode == 0, completed.stderr
    seen = json.loads(completed.stdout)
    streamed, whole = seen["streamed"], seen["whole"]
    assert len(whole) == 1 and whole[0][1] is True
    assert len(streamed) >= 2, streamed
    assert [final for _, final in streamed] == [False] * (len(streamed) - 1) + [True]
    assert "".join(text for text, _ in streamed) == whole[0][0]
    assert "text_input" in seen["empty_prompt"][0]["error"]


def test_zz_sigterm_leaves_no_engine_process(server: ServerProcess) -> None:
    """Runs last in this module: it stops the shared server."""
    parent = psutil.Process(server.pid)
    engine_processes = parent.children(recursive=True)
    assert engine_processes, "vLLM's engine core should run as a child process"
    server.stop(timeout=60)
    _, alive = psutil.wait_procs(engine_processes, timeout=10)
    assert not alive, f"left behind: {[(p.pid, p.name()) for p in alive]}"



@pytest.mark.parametrize(
    ("model_dir", "extra", "reason"),
    [("missing", [], "failed to start"), ("tiny", ["--engine_start_timeout_seconds", "2"], "did not start in time")],
    ids=["missing-weights", "start-timeout"],
)
def test_an_engine_that_cannot_start_makes_the_process_exit_non_zero(
    tmp_path: Path, model_dir: str, extra: list[str], reason: str
) -> None:
    """Never live-but-never-ready: the supervisor (kubelet, kubemind serve) sees the exit."""
    directory = tiny_llama_dir() if model_dir == "tiny" else tmp_path / "no-such-model"
    log = tmp_path / "server.log"
    command = [sys.executable, "-m", "kubemind_predictors.vllm", "--model_name", MODEL, "--model_dir", str(directory)]
    command += ["--host", "127.0.0.1", "--http_port", "0", "--grpc_port", "0", *ENGINE_ARGS, *extra]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **ENGINE_ENV})
        try:
            code = process.wait(timeout=240)
        finally:
            if process.poll() is None:
                process.kill()
    assert code == 1, log.read_text()[-2000:]
    assert reason in log.read_text()
    time.sleep(1)
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(directory) in " ".join(p.info["cmdline"] or [])]
