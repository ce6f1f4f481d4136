"""Traces across hops, received by a real OTLP receiver (tests/otlp_receiver.py).

A router chain (router -> `simple` over grpc-v2 -> `simple` over v2 REST), a RAG request
(transformer -> embedder, Milvus Lite, Feast -> the vLLM predictor's engine) and an async job
(writer -> RabbitMQ -> worker -> predictor -> Postgres/Redis -> webhook) each make one connected
trace: every span's parent is in the trace except the root's, which is the client's own span.
The exporters use both OTLP transports (gRPC and HTTP/protobuf) so both are covered.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from kubemind.processes import free_port, running_server, spawn_server, wait_until_ready
from kubemind_predictors.triton.launcher import TritonServerProcess
from tests.component.jobs_fixtures import (
    JobsPlumbing,
    RedisTarget,
    WebhookReceiver,
    require_rabbitmq,
    running_workers,
    running_writer,
    simple_body,
    submit,
)
from tests.component.llm_fixtures import (
    ENGINE_ARGS,
    ENGINE_ENV,
    ENGINE_READY_TIMEOUT,
    tiny_llama_dir,
)
from tests.component.rag_fixtures import applied_feature_repo
from tests.component.triton_fixtures import running_triton
from tests.otlp_receiver import (  # noqa: F401
    ReceivedSpan,
    ReceiverProcess,
    names,
    otlp_receiver,
    render_tree,
    roots,
)

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


def _graph() -> dict[str, object]:
    steps = {
        "add": {"protocol": "grpc-v2", "model": "simple"},
        "again": {
            "protocol": "v2",
            "model": "simple",
            "inputs": {"INPUT0": 'steps.add.outputs.#(name=="OUTPUT0")', "INPUT1": 'request.inputs.#(name=="INPUT1")'},
        },
    }
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "chain", "annotations": {"kubemind.io/router-steps": yaml.safe_dump(steps)}},
        "spec": {"nodes": {"root": {"routerType": "Sequence", "steps": [
            {"name": "add", "serviceName": "simple-a", "dependency": "Hard"},
            {"name": "again", "serviceName": "simple-b", "dependency": "Hard"},
        ]}}},
    }  # fmt: skip


def _connected(spans: list[ReceivedSpan]) -> None:
    assert [span.parent_span_id for span in roots(spans)] == [CLIENT_SPAN], render_tree(spans)
    assert {span.trace_id for span in spans} == {CLIENT_TRACE}


def _child(spans: list[ReceivedSpan], parent: ReceivedSpan, name: str) -> ReceivedSpan:
    found = [span for span in spans if span.parent_span_id == parent.span_id and span.name == name]
    assert len(found) == 1, f"no single {name!r} under {parent.name!r}:\n{render_tree(spans)}"
    return found[0]


def test_a_router_chain_is_one_trace_through_both_steps(otlp_receiver: ReceiverProcess, tmp_path: Path) -> None:  # noqa: F811
    with (
        running_server("kubemind_predictors.simple", [], tmp_path / "a.log", env=otlp_receiver.env("simple-a", "grpc")) as a,
        running_server("kubemind_predictors.simple", [], tmp_path / "b.log", env=otlp_receiver.env("simple-b", "http/protobuf")) as b,
    ):
        (tmp_path / "graph.yaml").write_text(yaml.safe_dump(_graph()))
        hosts = f"simple-a={a.grpc_address},simple-b=127.0.0.1:{b.http_port}"
        args = ["--graph", str(tmp_path / "graph.yaml"), "--service_hosts", hosts]
        with running_server("kubemind_transformers.router", args, tmp_path / "router.log", env=otlp_receiver.env("router")) as router:
            reply = httpx.post(f"{router.http_url}/v2/models/chain/infer", json=simple_body(3),
                               headers={"traceparent": TRACEPARENT}, timeout=30)  # fmt: skip
            assert reply.status_code == 200, reply.text
            expected = {"rest infer", "step add", "step again", "ModelInfer simple", "grpc ModelInfer",
                        "POST /v2/models/simple/infer"}  # fmt: skip
            spans = otlp_receiver.wait_for_trace(lambda t: expected <= names(t) and len(t) >= 7)
            router_log = router.log()

    print(render_tree(spans))  # shown with -rP: the trace as a tree
    _connected(spans)
    (root,) = roots(spans)
    assert (root.name, root.kind, root.service) == ("rest infer", "server", "router")
    add = _child(spans, root, "step add")
    grpc_call = _child(spans, add, "ModelInfer simple")
    served_a = _child(spans, grpc_call, "grpc ModelInfer")
    again = _child(spans, root, "step again")
    rest_call = _child(spans, again, "POST /v2/models/simple/infer")
    served_b = _child(spans, rest_call, "rest infer")
    assert (served_a.service, served_a.kind, served_a.transport) == ("simple-a", "server", "grpc")
    assert (served_b.service, served_b.kind, served_b.transport) == ("simple-b", "server", "http")
    assert served_b.attributes["http.response.status_code"] == 200
    assert add.start_ns < again.start_ns
    # The router's access-log line names the trace and its own span.
    access = next(json.loads(line) for line in router_log.splitlines() if '"endpoint":"infer"' in line)
    assert (access["trace_id"], access["span_id"]) == (CLIENT_TRACE, root.span_id)


def test_health_probes_get_no_span_unless_the_caller_traces_them(otlp_receiver: ReceiverProcess, tmp_path: Path) -> None:  # noqa: F811
    """The kubelet polls liveness and readiness every few seconds without trace context: a trace
    each would bury the requests. A traced caller's own check is still a span of its trace."""
    with running_server("kubemind_predictors.simple", [], tmp_path / "simple.log",
                        env=otlp_receiver.env("probed", "http/protobuf")) as server:  # fmt: skip
        for path in ("/v2/health/live", "/v2/health/ready") * 5:
            assert httpx.get(f"{server.http_url}{path}", timeout=10).status_code == 200
        traced = httpx.get(f"{server.http_url}/v2/health/ready", headers={"traceparent": TRACEPARENT}, timeout=10)
        assert traced.status_code == 200
        reply = httpx.post(f"{server.http_url}/v2/models/simple/infer", json=simple_body(1), timeout=10)
        assert reply.status_code == 200, reply.text
        # the untraced infer comes after every probe: once its span is in, so would theirs be
        otlp_receiver.wait_for(lambda spans: any(s.service == "probed" and s.name == "rest infer" for s in spans))
    spans = [span for span in otlp_receiver.spans() if span.service == "probed"]
    assert sorted(span.name for span in spans) == ["rest infer", "rest ready"], render_tree(spans)
    (ready,) = [span for span in spans if span.name == "rest ready"]
    assert (ready.trace_id, ready.parent_span_id) == (CLIENT_TRACE, CLIENT_SPAN)


# -- a RAG request ---------------------------------------------------------------------------------------
# Three short documents: indexed in seconds when the transformer starts, and a prompt that fits the
# tiny Llama's 512 positions (its text is noise; the trace is what is under test).
RAG_DOCUMENTS = {
    "assert": "The assert statement checks a condition while debugging: when the expression is false it raises AssertionError.",
    "pass": "The pass statement is a null operation: nothing happens when it runs. It fills a block that must hold a statement.",
    "break": "The break statement ends the nearest enclosing for or while loop, skipping its optional else clause.",
}


@pytest.mark.timeout(900)  # the vLLM engine's start, on two shared cores
def test_a_rag_request_is_one_trace_from_the_transformer_to_the_engine(otlp_receiver: ReceiverProcess, tmp_path: Path) -> None:  # noqa: F811
    """The transformer's server span holds the retrieval (embed, Milvus, Feast, re-rank) and the
    LLM call, whose child is the predictor's server span; under it the engine's `vllm generate`
    span carries the engine's own timestamps as events: queued, prefill (scheduled), decode
    (first token), last_token."""
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for name, text in RAG_DOCUMENTS.items():
        (corpus / f"{name}.md").write_text(text)
    features = applied_feature_repo(tmp_path / "features")
    llm_ports = (free_port(), free_port())
    llm_args = ["--model_name", "tiny", "--model_dir", str(tiny_llama_dir()), *ENGINE_ARGS]
    rag_args = ["--index_dir", str(tmp_path / "index"), "--index_corpus", str(corpus), "--feature_repo", str(features.path),
                "--llm_url", f"http://127.0.0.1:{llm_ports[0]}", "--llm_model", "tiny", "--top_k", "1", "--max_tokens", "4"]  # fmt: skip
    # Both start at once: the engine's start is most of the wait.
    llm = spawn_server("kubemind_predictors.vllm", llm_args, tmp_path / "llm.log",
                       env={**ENGINE_ENV, **otlp_receiver.env("llm", "grpc")}, ports=llm_ports)  # fmt: skip
    try:
        rag = spawn_server("kubemind_transformers.rag", rag_args, tmp_path / "rag.log", env=otlp_receiver.env("rag", "http/protobuf"))
        try:
            wait_until_ready(llm.http_url, llm.process, ENGINE_READY_TIMEOUT, llm.log_path)
            wait_until_ready(rag.http_url, rag.process, 600, rag.log_path)
            body = {"model": "rag", "messages": [{"role": "user", "content": "What does the pass statement do?"}],
                    "temperature": 0, "user": "alice"}  # fmt: skip
            reply = httpx.post(f"{rag.http_url}/openai/v1/chat/completions", json=body, headers={"traceparent": TRACEPARENT}, timeout=120)
            assert reply.status_code == 200, reply.text
            assert reply.json()["sources"][0]["source"] == "pass.md"
            expected = {"rag retrieve", "rag embed", "milvus search docs", "feast get_online_features", "rag rerank",
                        "POST /openai/v1/chat/completions", "vllm generate"}  # fmt: skip
            spans = otlp_receiver.wait_for_trace(lambda t: t[0].trace_id == CLIENT_TRACE and expected <= names(t)
                                                 and len([s for s in t if s.kind == "server"]) == 2)  # fmt: skip
        finally:
            rag.stop()
    finally:
        llm.stop()

    print(render_tree(spans))  # shown with -rP: the trace as a tree
    _connected(spans)
    (root,) = roots(spans)
    assert (root.name, root.kind, root.service) == ("rest openai_chat_completions", "server", "rag")
    retrieve = _child(spans, root, "rag retrieve")
    stages = {name: _child(spans, retrieve, name) for name in ("rag embed", "milvus search docs", "feast get_online_features", "rag rerank")}
    assert [stages[name].kind for name in stages] == ["internal", "client", "client", "internal"]
    assert stages["milvus search docs"].attributes["db.system.name"] == "milvus"
    assert stages["rag embed"].start_ns < stages["milvus search docs"].start_ns < stages["feast get_online_features"].start_ns
    llm_call = _child(spans, root, "POST /openai/v1/chat/completions")
    assert llm_call.kind == "client" and llm_call.attributes["http.response.status_code"] == 200
    assert retrieve.start_ns < llm_call.start_ns  # the prompt needs the retrieval
    served = _child(spans, llm_call, "rest openai_chat_completions")
    assert (served.kind, served.service) == ("server", "llm")
    generate = _child(spans, served, "vllm generate")
    assert generate.events == ("queued", "prefill", "decode", "last_token"), render_tree(spans)
    assert list(generate.event_ns) == sorted(generate.event_ns)  # the engine's stamps, in their order
    assert 1 <= generate.attributes["gen_ai.usage.output_tokens"] <= 4  # --max_tokens 4 (or an early end of sequence)
    assert generate.attributes["gen_ai.usage.input_tokens"] > 0
    for stage in ("time_in_queue", "time_in_model_prefill", "time_in_model_decode"):
        assert generate.attributes[f"gen_ai.latency.{stage}"] >= 0


# -- the async path -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServerProcess]:
    with running_triton(tmp_path_factory.mktemp("tracing-triton"), ["simple"]) as server:
        yield server


def test_an_async_job_is_one_trace_from_submit_to_webhook(
    otlp_receiver: ReceiverProcess,  # noqa: F811
    triton: TritonServerProcess,
    postgres_dsn: str,
    redis_target: RedisTarget,
    tmp_path: Path,
) -> None:
    plumbing = JobsPlumbing(postgres_dsn, redis_target, "rabbitmq", require_rabbitmq(), f"trace-jobs-{uuid.uuid4().hex[:8]}")
    with (
        WebhookReceiver() as hooks,
        running_writer(triton, plumbing, tmp_path / "writer.log", env=otlp_receiver.env("writer", "http/protobuf")) as writer,
    ):
        reply = submit(writer, simple_body(5), hooks.url(), headers={"traceparent": TRACEPARENT})
        assert reply.status_code == 202, reply.text
        job_id = reply.json()["id"]
        with running_workers(writer.grpc_address, plumbing, tmp_path, 1, env=otlp_receiver.env("worker")):
            hook = hooks.wait_for([job_id], 60)[job_id][0]
            expected = {"rest jobs_submit", f"publish {plumbing.topic}", f"process {plumbing.topic}",
                        "grpc ModelInfer", "webhook POST", "postgres store results", "redis EVALSHA put-if-newer"}  # fmt: skip
            spans = otlp_receiver.wait_for_trace(lambda t: expected <= names(t))

    print(render_tree(spans))
    _connected(spans)
    (root,) = roots(spans)
    assert (root.name, root.service) == ("rest jobs_submit", "writer")
    publish = _child(spans, root, f"publish {plumbing.topic}")
    assert publish.kind == "producer"
    process = _child(spans, publish, f"process {plumbing.topic}")
    assert (process.kind, process.service) == ("consumer", "worker")
    infer = _child(spans, process, "ModelInfer simple")
    assert _child(spans, infer, "grpc ModelInfer").service == "writer"  # the writer serves the predictor too
    _child(spans, process, "postgres claim jobs")
    _child(spans, process, "postgres store results")
    webhook = _child(spans, root, "webhook POST")
    assert webhook.service == "worker" and webhook.attributes["kubemind.job_id"] == job_id
    # The receiver gets the webhook span's context, so its own spans would join the trace.
    assert hook.headers["traceparent"].split("-")[1:3] == [CLIENT_TRACE, webhook.span_id]
