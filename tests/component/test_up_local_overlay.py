"""`make serve` is `kubemind up` of the checkout's own `local` overlay: the models registered in a
fresh registry by `kubemind models demo`, then every InferenceService of the overlay served from
it behind nginx and called as a user would (stock clients, the gateway's path routes).

Slow (minutes): the docs index is built, and vLLM engines start three times (llm-chat and the
rag predictor are minReplicas 0: the first request wakes each; llm-chat again after its engine
is killed).
"""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import tritonclient.http as triton_http

from kubemind_predictors.vllm.convert import cache_root
from tests.component.up_fixtures import REPO, Up

LOCAL_OVERLAY = REPO / "inferenceservices" / "overlays" / "local"
SERVICES = ("cv-classifier", "cv-to-llm-router", "embedder", "llm-chat", "rag", "simple")
# A vLLM engine's start on a loaded 2-core machine (seen: 60-220 s), and the demo's first run.
COLD_START_SECONDS = 420.0


def kubemind(home: Path, *argv: str, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as `make serve` runs it, on the embedded registry under `home` (a fresh one)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"KUBEMIND_HOME": str(home)} | (env or {})
    return subprocess.run([sys.executable, "-m", "kubemind.cli", *argv], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    home = tmp_path_factory.mktemp("home")
    for argv in (("features", "apply"), ("features", "materialize")):
        done = kubemind(home, *argv, timeout=300)
        assert done.returncode == 0, done.stderr
    # The docs index is built into a folder kept between runs (outside the clone): a rebuild of
    # the same corpus finds every chunk stored and embeds nothing, so only a first run pays
    # its minutes. The registry, the node cache and everything else are this run's own.
    index = cache_root() / "test-indexes" / "python-reference"
    demo = kubemind(home, "models", "demo", timeout=900, env={"KUBEMIND_RAG_INDEX_DIR": str(index)})
    assert demo.returncode == 0, demo.stderr + demo.stdout
    again = kubemind(home, "models", "demo", timeout=120)
    # a second `make serve` registers nothing
    assert again.returncode == 0 and again.stdout.count("registered already") == 4, again.stdout + again.stderr
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        running = Up(LOCAL_OVERLAY, home)
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    try:
        running.wait_for(lambda s: s["ready"], "ready", timeout=600)
        yield running
    finally:
        running.stop()


def service_url(up: Up, name: str) -> str:
    return f"http://127.0.0.1:{up.state()['gateway']['http_port']}/serving/kubemind/{name}"


def test_every_service_of_the_local_overlay_runs_and_reports_ready_to_kubectl(up: Up) -> None:
    from kubernetes import client

    state = up.state()
    problems = {s["name"]: s["problem"] or [c["problem"] for c in s["components"] if c["problem"]]
                for s in state["services"]}
    assert sorted(problems) == sorted(SERVICES)
    assert not any(problems.values()), problems
    listed = client.CustomObjectsApi(up.kube_client()).list_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", "kubemind", "inferenceservices")
    ready = {item["metadata"]["name"]: next(c["status"] for c in item["status"]["conditions"] if c["type"] == "Ready")
             for item in listed["items"]}
    assert ready == dict.fromkeys(SERVICES, "True")
    # the table and a sample call per service, printed once everything is ready
    out = up.text()
    assert "all services ready;" in out
    for name in SERVICES:
        assert f"== kubemind/{name}\n" in out, out


def test_the_registered_embedder_runs_on_stock_triton_behind_the_gateway(up: Up) -> None:
    client = triton_http.InferenceServerClient(service_url(up, "embedder").removeprefix("http://"))
    text = triton_http.InferInput("text", [2, 1], "BYTES")  # Triton's own signature: [n, 1]
    text.set_data_from_numpy(np.array([[b"A man is eating food."], [b"A man eats bread."]], dtype=object))
    vectors = client.infer("minilm", [text]).as_numpy("embedding")
    assert vectors is not None and vectors.shape == (2, 384)
    assert float(vectors[0] @ vectors[1]) > 0.5  # normalised sentence embeddings of similar sentences


def photo_data_url() -> str:
    import PIL.Image
    import skimage.data

    jpeg = io.BytesIO()
    PIL.Image.fromarray(skimage.data.coffee()).save(jpeg, format="JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.getvalue()).decode()


def test_the_classifier_the_llm_and_the_graph_chaining_them_answer(up: Up) -> None:
    from openai import OpenAI

    # llm-chat starts from zero on this first request (the activator holds it meanwhile)
    llm = OpenAI(base_url=service_url(up, "llm-chat") + "/openai/v1", api_key="unused", timeout=COLD_START_SECONDS)
    answer = llm.chat.completions.create(model="smollm2", max_tokens=16, temperature=0,
                                         messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in (answer.choices[0].message.content or "")

    router = OpenAI(base_url=service_url(up, "cv-to-llm-router") + "/openai/v1", api_key="unused", timeout=120)
    parts = [{"type": "text", "text": "Describe the photo."}, {"type": "image_url", "image_url": {"url": photo_data_url()}}]
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in router.chat.completions.create(
        model="cv-to-llm", messages=[{"role": "user", "content": parts}], stream=True, max_tokens=48))  # type: ignore[misc]
    # the classifier's labels reached the LLM's prompt: it talks about the coffee
    assert any(word in streamed.lower() for word in ("espresso", "coffee", "cup")), streamed
    plain = router.chat.completions.create(model="cv-to-llm", messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in (plain.choices[0].message.content or "")


def llm_chat_revision(state: dict[str, Any]) -> dict[str, Any]:
    (service,) = [s for s in state["services"] if s["name"] == "llm-chat"]
    (revision,) = service["components"][0]["revisions"]
    return dict(revision)


def gone(pid: int) -> bool:
    """Exited (a zombie not yet reaped by whoever inherited it counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_replica_whose_engine_died_is_restarted_by_up_and_answers_again(up: Up) -> None:
    """Issue 18's fault end to end: the vLLM engine core killed under `up` makes the replica exit
    (not live with a dead engine), `up` restarts it, and it answers again; nothing is orphaned.
    Runs right after llm-chat woke (before idleness scales it back to zero)."""
    from openai import OpenAI

    before = llm_chat_revision(up.state())
    assert before["ready"] == 1 and before["pids"], before
    server = psutil.Process(before["pids"][0])
    cores = [c for c in server.children(recursive=True) if "EngineCore" in c.name() or "EngineCore" in " ".join(c.cmdline())]
    assert cores, [c.cmdline() for c in server.children(recursive=True)]
    for core in cores:
        os.kill(core.pid, signal.SIGKILL)
    after = up.wait_for(lambda s: (r := llm_chat_revision(s))["restarts"] >= 1 and r["ready"] == 1
                        and r["pids"] != before["pids"], "llm-chat restarted", timeout=COLD_START_SECONDS)
    assert gone(server.pid) and all(gone(core.pid) for core in cores)
    assert "restarting" in up.text()
    llm = OpenAI(base_url=service_url(up, "llm-chat") + "/openai/v1", api_key="unused", timeout=120)
    answer = llm.chat.completions.create(model="smollm2", max_tokens=16, temperature=0,
                                         messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in (answer.choices[0].message.content or ""), after


def test_rag_answers_from_the_registered_index_through_the_embedder(up: Up) -> None:
    body = {"model": "rag", "max_tokens": 48, "temperature": 0,
            "messages": [{"role": "user", "content": "What does the assert statement do?"}]}
    url = service_url(up, "rag") + "/openai/v1/chat/completions"
    deadline = time.monotonic() + COLD_START_SECONDS
    with httpx.Client(timeout=COLD_START_SECONDS) as http:
        while True:
            # The rag predictor (vLLM) starts from zero on the first question; the transformer's
            # LLM call times out meanwhile (504), so ask again until the engine answers.
            try:
                response = http.post(url, json=body)
            except httpx.RemoteProtocolError:
                # nginx's reload, once the predictor is ready, closes idle keep-alive
                # connections: one reused at that moment ends without a response.
                continue
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            assert response.status_code in (502, 503, 504), response.text
    assert response.status_code == 200, response.text + up.text()[-3000:]
    reply = response.json()
    sources = [source["source"] for source in reply["sources"]]
    assert any("assert" in source for source in sources), sources
    assert reply["choices"][0]["message"]["content"]
