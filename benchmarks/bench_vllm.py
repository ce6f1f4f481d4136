"""VLLMPredictor against vLLM's own OpenAI server: same model, same load, one run.

Each server runs alone (two engines on two cores would measure each other), streaming chat
completions at concurrency 1 and 8. Reported: output tokens/s and time to first token
(p50/p99), and the predictor's ratios to vLLM. Goal: >= 0.95x throughput, TTFT within 10%.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from kubemind.processes import free_port, start_server
from kubemind.protocol.sse import DONE, event_data, read_event
from kubemind_predictors.vllm.convert import convert_gguf, default_smollm2_dir, smollm2_gguf_path

MODEL = "smollm2"
MAX_TOKENS = 32
REQUESTS = {1: 6, 8: 24}  # concurrency -> requests measured
ENV = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}
PROMPTS = ["Tell me about Paris.", "Why is the sky blue?", "Write a haiku about Kubernetes."]


@dataclass
class Result:
    tokens_per_second: float
    ttft_p50_ms: float
    ttft_p99_ms: float


@contextmanager
def predictor_server(model_dir: Path, log: Path) -> Iterator[str]:
    args = ["--model_name", MODEL, "--model_dir", str(model_dir), "--max_model_len", "1024"]
    args += ["--enforce_eager", "true", "--kv_cache_space", "1", "--dtype", "float32"]
    args += ["--log_requests", "false"]
    server = start_server("kubemind_predictors.vllm", args, log, env=ENV, ready_timeout=300)
    try:
        yield f"{server.http_url}/openai/v1"
    finally:
        server.stop(timeout=60)


@contextmanager
def vllm_server(model_dir: Path, log: Path) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir), "--served-model-name", MODEL, "--host", "127.0.0.1",
        "--port", str(port), "--max-model-len", "1024", "--enforce-eager", "--dtype", "float32",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **ENV}
        )
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"vLLM server exited:\n{log.read_text(errors='replace')[-4000:]}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("vLLM server not ready")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def one_stream(client: httpx.AsyncClient, url: str, prompt: str) -> tuple[float, int]:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    ttft = 0.0
    tokens = 0
    async with client.stream("POST", f"{url}/chat/completions", json=body) as reply:
        reply.raise_for_status()
        async for line in reply.aiter_lines():
            data = event_data(line)
            if data is None or data == DONE:
                continue
            event = read_event(data)
            if not ttft and event.text:
                ttft = time.perf_counter() - started
            if event.usage:
                tokens = event.usage["completion_tokens"]
    return ttft, tokens


async def load(url: str, concurrency: int, requests: int) -> Result:
    async with httpx.AsyncClient(timeout=300) as client:
        await one_stream(client, url, "warm up")
        queue = list(range(requests))
        ttfts: list[float] = []
        total_tokens = 0

        async def worker() -> None:
            nonlocal total_tokens
            while queue:
                i = queue.pop()
                ttft, tokens = await one_stream(client, url, PROMPTS[i % len(PROMPTS)])
                ttfts.append(ttft)
                total_tokens += tokens

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ttfts.sort()
    p99 = ttfts[min(len(ttfts) - 1, round(0.99 * (len(ttfts) - 1)))]
    return Result(total_tokens / elapsed, statistics.median(ttfts) * 1000, p99 * 1000)


def measure(url: str) -> dict[int, Result]:
    return {c: asyncio.run(load(url, c, n)) for c, n in REQUESTS.items()}


def median_result(results: list[Result]) -> Result:
    return Result(
        statistics.median(r.tokens_per_second for r in results),
        statistics.median(r.ttft_p50_ms for r in results),
        statistics.median(r.ttft_p99_ms for r in results),
    )


# A-B-B-A: a machine that slows down (or speeds up) during the run weighs on both servers alike.
ORDER = ("predictor", "vllm", "vllm", "predictor")


def main() -> None:
    model_dir = convert_gguf(smollm2_gguf_path(), default_smollm2_dir())
    logs = Path(tempfile.mkdtemp(prefix="bench-vllm-"))
    servers = {"predictor": predictor_server, "vllm": vllm_server}
    runs: dict[str, list[dict[int, Result]]] = {name: [] for name in servers}
    for index, name in enumerate(ORDER):
        with servers[name](model_dir, logs / f"{name}-{index}.log") as url:
            runs[name].append(measure(url))
    ours = {c: median_result([run[c] for run in runs["predictor"]]) for c in REQUESTS}
    theirs = {c: median_result([run[c] for run in runs["vllm"]]) for c in REQUESTS}
    print(f"SmolLM2-135M, CPU, float32, {MAX_TOKENS} output tokens per streamed chat request;"
          f" each server started {len(ORDER) // 2} times in A-B-B-A order, medians")
    print(
        f"{'concurrency':>11} {'server':>14} {'tok/s':>8} {'TTFT p50 ms':>12} {'TTFT p99 ms':>12}"
    )
    for c in REQUESTS:
        for name, result in (("VLLMPredictor", ours[c]), ("vLLM server", theirs[c])):
            print(
                f"{c:>11} {name:>14} {result.tokens_per_second:>8.1f} "
                f"{result.ttft_p50_ms:>12.1f} {result.ttft_p99_ms:>12.1f}"
            )
        print(
            f"{c:>11} {'ratio':>14} {ours[c].tokens_per_second / theirs[c].tokens_per_second:>7.2f}x "
            f"{ours[c].ttft_p50_ms / theirs[c].ttft_p50_ms:>11.2f}x "
            f"{ours[c].ttft_p99_ms / theirs[c].ttft_p99_ms:>11.2f}x"
        )
    print(
        "goal: throughput ratio >= 0.95, TTFT ratio <= 1.10 (GPU comparison not run: no GPU lent)"
    )


if __name__ == "__main__":
    main()
