"""The inference router with real services: Triton + the Triton predictor + the image transformer
(the classifier step) and the vLLM predictor on SmolLM2-135M-Instruct (the LLM step), running the
shipped cv-to-llm graph with shorter answers.

Greedy decoding makes the LLM's words a function of the prompt: the router's answer equal to the
LLM's own answer for "... labels: espresso, ..." proves the labels the classifier found became
the prompt (SmolLM2 loads in about 30 s here, about as fast as the tiny random Llama, and its
description of the coffee photo names the espresso).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from kubemind.processes import (
    ServerProcess,
    die_with_parent,
    free_port,
    running_server,
    wait_until_ready,
)
from tests.component.llm_fixtures import (
    ENGINE_ARGS,
    ENGINE_ENV,
    ENGINE_READY_TIMEOUT,
    smollm2_dir,
)
from tests.component.triton_fixtures import (
    photo,
    running_predictor,
    running_transformer,
    running_triton,
    stock_client,
)

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "inferenceservices" / "base" / "cv-to-llm" / "inferencegraph.yaml"
STEPS = "kubemind.io/router-steps"
STREAM_PROBE = Path(__file__).with_name("router_stream_probe.py")
LLM = "smollm2"
SAMPLING = {"max_tokens": 16, "temperature": 0}
QUESTION = "Describe the photo."
STEP_DEADLINE = 0.3  # seconds; the slow `simple` server answers after SLOW_SECONDS
SLOW_SECONDS = 3.0
GRAPH_DEADLINE = 1.0  # seconds; 200 tokens of SmolLM2 take several seconds here
PROMPT = "An image classifier's top labels for the user's photo are: {labels}. {question}"


@dataclass
class Stack:
    router: ServerProcess
    transformer: ServerProcess
    llm: ServerProcess
    workdir: Path


def _launch(module: str, args: list[str], log: Path, env: dict[str, str]) -> ServerProcess:
    """Start a server without waiting for it (the LLM loads while Triton starts)."""
    http_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", module, "--host", "127.0.0.1", "--http_port", str(http_port), "--grpc_port", str(grpc_port), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}, preexec_fn=die_with_parent())
    return ServerProcess(process, http_port, grpc_port, log)


def _graphs() -> list[dict[str, Any]]:
    """The shipped graph (LLM model renamed) plus variants for the fault cases."""
    demo = yaml.safe_load(DEMO.read_text())
    options = yaml.safe_load(demo["metadata"]["annotations"][STEPS])
    for step in ("describe", "answer"):
        options[step]["parameters"] = SAMPLING
    demo["metadata"]["annotations"][STEPS] = yaml.safe_dump(options)

    strict = copy.deepcopy(demo)
    strict["metadata"]["name"] = "cv-to-llm-strict"
    strict["spec"]["nodes"]["describe-image"]["steps"][0]["dependency"] = "Hard"

    def graph(name: str, router_type: str, steps: list[dict[str, Any]], step_options: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "InferenceGraph",
            "metadata": {"name": name, "annotations": {STEPS: yaml.safe_dump(step_options)}},
            "spec": {"nodes": {"root": {"routerType": router_type, "steps": steps}}},
        }

    llm_step = {"protocol": "openai-chat", "model": LLM, "parameters": SAMPLING}
    deadline = graph(
        "slow-step", "Sequence",
        [{"name": "slow", "serviceName": "slow-simple", "dependency": "Hard"}],
        {"slow": {"model": "simple", "timeoutSeconds": STEP_DEADLINE}},
    )  # fmt: skip
    ensemble = graph(
        "labels-and-answer", "Ensemble",
        [{"name": "classify", "serviceName": "cv-classifier", "dependency": "Hard"},
         {"name": "answer", "serviceName": "llm-chat", "dependency": "Hard"}],
        {"classify": options["classify"], "answer": llm_step},
    )  # fmt: skip
    slow = graph(
        "slow-ensemble", "Ensemble",
        [{"name": "classify", "serviceName": "cv-classifier", "dependency": "Hard"},
         {"name": "answer", "serviceName": "llm-chat", "dependency": "Hard"}],
        {"classify": options["classify"], "answer": {**llm_step, "parameters": {"max_tokens": 200, "ignore_eos": True}}},
    )  # fmt: skip
    slow["spec"]["timeout"] = GRAPH_DEADLINE
    return [demo, strict, deadline, ensemble, slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("router")
    llm_args = ["--model_name", LLM, "--model_dir", str(smollm2_dir()), "--max_model_len", "512", *ENGINE_ARGS]
    llm = _launch("kubemind_predictors.vllm", llm_args, workdir / "llm.log", ENGINE_ENV)
    try:
        with (
            running_triton(workdir, ["efficientnet_lite0"]) as triton,
            running_predictor(triton, workdir) as predictor,
            running_transformer(predictor.grpc_address, workdir) as transformer,
            running_server("kubemind_predictors.simple", ["--delay_seconds", str(SLOW_SECONDS)], workdir / "slow.log") as slow,
        ):
            wait_until_ready(llm.http_url, llm.process, ENGINE_READY_TIMEOUT, llm.log_path)
            graphs = workdir / "graphs.yaml"
            graphs.write_text(yaml.safe_dump_all(_graphs()))
            hosts = f"cv-classifier=127.0.0.1:{transformer.http_port},llm-chat=127.0.0.1:{llm.http_port},slow-simple={slow.grpc_address}"
            args = ["--graph", str(graphs), "--service_hosts", hosts]
            with running_server("kubemind_transformers.router", args, workdir / "router.log") as router:
                yield Stack(router, transformer, llm, workdir)
    finally:
        llm.stop()


def _chat(
    base_url: str, model: str, content: Any, stream: bool = False, headers: dict[str, str] | None = None, **sampling: Any
) -> Any:
    client = openai.OpenAI(base_url=f"{base_url}/openai/v1", api_key="unused", max_retries=0, default_headers=headers)
    options = {**SAMPLING, **sampling}
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], stream=stream, **options)


def _image_message(image: bytes, text: str = QUESTION) -> list[dict[str, Any]]:
    url = "data:image/jpeg;base64," + base64.b64encode(image).decode()
    return [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]


def _v2_body(image: bytes, text: str) -> dict[str, Any]:
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(image).decode()]},
                       {"name": "text_input", "datatype": "BYTES", "shape": [1], "data": [text]}]}  # fmt: skip


def _labels(transformer: ServerProcess, image: bytes) -> list[str]:
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(image).decode()]}]}
    reply = httpx.post(f"{transformer.http_url}/v2/models/efficientnet_lite0/infer", json=body, timeout=30).json()
    labels = next(o for o in reply["outputs"] if o["name"] == "labels")
    return list(labels["data"])


def _direct_answer(llm: ServerProcess, prompt: str) -> str:
    return str(_chat(llm.http_url, LLM, prompt).choices[0].message.content)


def test_image_and_question_chain_classifier_labels_into_the_llm_prompt(stack: Stack) -> None:
    coffee = photo("coffee")
    labels = _labels(stack.transformer, coffee)
    assert labels[0] == "espresso"
    expected = _direct_answer(stack.llm, PROMPT.format(labels=", ".join(labels), question=QUESTION))

    answer = _chat(stack.router.http_url, "cv-to-llm", _image_message(coffee))
    assert answer.model == "cv-to-llm"
    assert answer.choices[0].message.content == expected
    assert "espresso" in expected.lower()

    streamed = list(_chat(stack.router.http_url, "cv-to-llm", _image_message(coffee), stream=True))
    deltas = [c.choices[0].delta.content for c in streamed if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 1, "the LLM step's tokens pass through one by one"
    assert "".join(deltas) == expected


def test_a_request_without_an_image_takes_the_switch_straight_to_the_llm(stack: Stack) -> None:
    answer = _chat(stack.router.http_url, "cv-to-llm", "Hello there")
    assert answer.choices[0].message.content == _direct_answer(stack.llm, "Hello there")
    # The client's sampling options win over the graph's for the answer it gets.
    short = _chat(stack.router.http_url, "cv-to-llm", "Hello there", max_tokens=3)
    assert short.choices[0].message.content == str(_chat(stack.llm.http_url, LLM, "Hello there", max_tokens=3).choices[0].message.content)
    assert len(short.choices[0].message.content) < len(answer.choices[0].message.content)


def test_stock_grpc_client_streams_the_graph_and_matches_rest(stack: Stack) -> None:
    image = stack.workdir / "coffee.jpg"
    image.write_bytes(photo("coffee"))
    completed = subprocess.run(
        [sys.executable, str(STREAM_PROBE), stack.router.grpc_address, "cv-to-llm", QUESTION, str(image)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    probe = json.loads(completed.stdout)
    streamed = probe["streamed"]
    assert len(streamed) > 1 and [final for _, final in streamed] == [False] * (len(streamed) - 1) + [True]
    whole = probe["whole"]["outputs"]["text_output"][0]
    assert "".join(text for text, _ in streamed) == whole
    assert whole == _chat(stack.router.http_url, "cv-to-llm", _image_message(photo("coffee"))).choices[0].message.content


def test_generate_stream_equals_generate(stack: Stack) -> None:
    body = {"text_input": QUESTION, "image": base64.b64encode(photo("coffee")).decode()}
    url = f"{stack.router.http_url}/v2/models/cv-to-llm"
    whole = httpx.post(f"{url}/generate", json=body, timeout=60)
    assert whole.status_code == 200, whole.text
    with httpx.stream("POST", f"{url}/generate_stream", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
    assert len(events) > 1
    assert "".join(e["text_output"] for e in events) == whole.json()["text_output"]


def _access_lines(server: ServerProcess, request_id: str) -> list[dict[str, Any]]:
    lines = []
    for line in server.log().splitlines():
        if request_id in line:
            entry = json.loads(line)
            if "request_id" in entry:
                lines.append(entry)
    return lines


def test_every_step_gets_the_request_id_and_the_trace_headers(stack: Stack) -> None:
    request_id = f"router-test-{time.time_ns()}"
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    _chat(stack.router.http_url, "cv-to-llm", _image_message(photo("coffee")),
          headers={"x-request-id": request_id, "traceparent": traceparent, "x-not-allowed": "secret"})  # fmt: skip
    time.sleep(0.2)  # access lines are written as each request finishes
    for server in (stack.router, stack.transformer, stack.llm):
        (line,) = _access_lines(server, request_id)
        assert line["trace"] == {"traceparent": traceparent}, server.log_path


def test_no_matching_switch_branch_is_a_400_listing_the_conditions(stack: Stack) -> None:
    body = {"inputs": [{"name": "other", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}
    reply = httpx.post(f"{stack.router.http_url}/v2/models/cv-to-llm/infer", json=body, timeout=30)
    assert reply.status_code == 400
    message = reply.json()["error"]
    assert "no branch of Switch node 'root'" in message
    assert 'with-image: inputs.#(name=="image")' in message and 'answer: inputs.#(name=="text_input")' in message


def test_a_step_over_its_deadline_is_a_504_naming_it(stack: Stack) -> None:
    body = {"inputs": [{"name": n, "datatype": "INT32", "shape": [1, 16], "data": list(range(16))} for n in ("INPUT0", "INPUT1")]}
    started = time.monotonic()
    reply = httpx.post(f"{stack.router.http_url}/v2/models/slow-step/infer", json=body, timeout=30)
    assert reply.status_code == 504
    assert time.monotonic() - started < SLOW_SECONDS / 2, "the router gives up at the step's deadline"
    assert reply.json()["error"].startswith("step 'slow' (service 'slow-simple') at 127.0.0.1:")
    assert reply.json()["error"].endswith(f"did not answer within its {STEP_DEADLINE:g} s deadline")


def test_an_ensemble_merges_every_branch(stack: Stack) -> None:
    body = _v2_body(photo("coffee"), "Hello there")
    reply = httpx.post(f"{stack.router.http_url}/v2/models/labels-and-answer/infer", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o["data"] for o in reply.json()["outputs"]}
    assert outputs["classify.labels"][0] == "espresso"
    assert outputs["answer.text_output"] == [_direct_answer(stack.llm, "Hello there")]


def test_past_the_graph_deadline_the_running_branches_are_cancelled(stack: Stack) -> None:
    body = _v2_body(photo("coffee"), "Hello there")
    started = time.monotonic()
    reply = httpx.post(f"{stack.router.http_url}/v2/models/slow-ensemble/infer", json=body, timeout=30)
    assert reply.status_code == 504
    assert time.monotonic() - started < GRAPH_DEADLINE + 0.5
    message = reply.json()["error"]
    assert message.startswith(f"graph 'slow-ensemble' did not finish within its {GRAPH_DEADLINE:g} s deadline")
    # The classifier usually made it; the LLM branch cannot have.
    cancelled = message.split("now cancelled: ", 1)[1].rstrip(")").split(", ")
    assert "answer" in cancelled


def test_a_graph_with_a_cycle_is_refused_at_start_naming_the_path(tmp_path: Path) -> None:
    graph = yaml.safe_load(DEMO.read_text())
    graph["spec"]["nodes"]["describe-image"]["steps"].append({"name": "loop", "nodeName": "root"})
    path = tmp_path / "cycle.yaml"
    path.write_text(yaml.safe_dump(graph))
    completed = subprocess.run(
        [sys.executable, "-m", "kubemind_transformers.router", "--graph", str(path), "--host", "127.0.0.1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "cycle root.steps[0] 'with-image' -> node 'describe-image' -> describe-image.steps[2] 'loop' -> node 'root'" in completed.stderr


def test_zz_a_killed_step_is_skipped_when_soft_and_fails_the_graph_when_hard(stack: Stack) -> None:
    stack.transformer.stop()
    answer = _chat(stack.router.http_url, "cv-to-llm", _image_message(photo("coffee")))
    assert answer.choices[0].message.content == _direct_answer(stack.llm, PROMPT.format(labels="", question=QUESTION))
    (skipped,) = answer.model_extra["skipped_steps"]
    assert skipped["step"] == "classify" and skipped["service"] == "cv-classifier" and skipped["status"] == 503

    v2 = httpx.post(f"{stack.router.http_url}/v2/models/cv-to-llm/infer", json=_v2_body(photo("coffee"), QUESTION), timeout=60)
    assert v2.status_code == 200 and v2.json()["parameters"]["skipped_steps"] == "classify"

    with pytest.raises(openai.APIStatusError) as failed:
        _chat(stack.router.http_url, "cv-to-llm-strict", _image_message(photo("coffee")))
    assert failed.value.status_code == 503
    assert "step 'classify' (service 'cv-classifier')" in failed.value.message
    image = base64.b64encode(photo("coffee")).decode()
    text = base64.b64encode(QUESTION.encode()).decode()
    (over_grpc,) = stock_client(stack.router.grpc_address, {"model": "cv-to-llm-strict", "inputs": [
        {"name": "image", "datatype": "BYTES", "shape": [1], "data": [image]},
        {"name": "text_input", "datatype": "BYTES", "shape": [1], "data": [text]},
    ]})  # fmt: skip
    assert over_grpc["error"]["status"] == "StatusCode.UNAVAILABLE"
    assert "step 'classify' (service 'cv-classifier')" in over_grpc["error"]["message"]
