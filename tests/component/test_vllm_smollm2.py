"""SmolLM2-135M-Instruct through the vLLM predictor: the answers make sense."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from kubemind.processes import ServerProcess, start_server
from tests.component.llm_fixtures import ENGINE_ARGS, ENGINE_ENV, ENGINE_READY_TIMEOUT, smollm2_dir


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = Path(tmp_path_factory.mktemp("smollm2")) / "server.log"
    args = ["--model_name", "smollm2", "--model_dir", str(smollm2_dir()), "--max_model_len", "1024"]
    process = start_server(
        "kubemind_predictors.vllm",
        [*args, *ENGINE_ARGS],
        log,
        env=ENGINE_ENV,
        ready_timeout=ENGINE_READY_TIMEOUT,
    )
    yield process
    process.stop()


def test_capital_of_france_is_paris(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{server.http_url}/openai/v1", api_key="unused")
    reply = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24,
        temperature=0,
    )
    assert "Paris" in (reply.choices[0].message.content or "")
