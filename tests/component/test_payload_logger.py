"""The payload logger with a real HTTP receiver: every request and response of the `simple`
server arrives as a binary-mode CloudEvent with KServe's Ce-* headers; a streamed reply's
response event is its whole body, sent once the stream ends; a dead sink leaves requests
unaffected and every lost event counted."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from prometheus_client.parser import text_string_to_metric_families

from kubemind.drift.service import rows_of_event
from kubemind.payload_logger import (
    GRPC_REQUEST_CONTENT_TYPE,
    GRPC_RESPONSE_CONTENT_TYPE,
    REQUEST_TYPE,
    RESPONSE_TYPE,
    sampled,
)
from kubemind.processes import ServerProcess, free_port, running_server
from kubemind.protocol import triton_extensions_pb2 as ext
from kubemind.server import KubemindServer
from kubemind.settings import ComponentSettings
from kubemind_predictors.simple.model import SimpleModel
from tests.component.jobs_fixtures import TansuBroker, simple_body
from tests.component.test_pipeline import EchoGenerator

REST_REQUESTS = 20
GRPC_REQUESTS = 5


@dataclass(frozen=True)
class Event:
    headers: dict[str, str]
    body: bytes


class EventReceiver:
    """Records every POST (a CloudEvents sink, as KServe's message dumper is)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.events.append(Event({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 60) -> list[Event]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.events) >= count:
                    return list(self.events)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.events)} of {count} events arrived")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[EventReceiver]:
    listening = EventReceiver()
    yield listening
    listening.close()


def _logged_server(tmp_path: Path, url: str, *extra: str) -> contextlib.AbstractContextManager[ServerProcess]:
    args = ["--model_name", "simple", "--log_url", url, "--inference_service", "simple-isvc", "--namespace", "models",
            "--component", "predictor", "--endpoint", "default", *extra]  # fmt: skip
    return running_server("kubemind_predictors.simple", args, tmp_path / "server.log")


def _counters(server: ServerProcess) -> dict[str, float]:
    text = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("kubemind_payload_"):
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = sample.name + "".join(f"[{v}]" for v in sample.labels.values())
                    found[key] = sample.value
    return found


def _wait_counted(server: ServerProcess, made: int, timeout: float = 60) -> dict[str, float]:
    """The counters once every event made is either sent or dropped."""
    deadline = time.monotonic() + timeout
    while True:
        counters = _counters(server)
        settled = sum(v for k, v in counters.items() if k.startswith(("kubemind_payload_events_sent_total", "kubemind_payload_events_dropped_total")))
        if settled >= made or time.monotonic() > deadline:
            return counters
        time.sleep(0.1)


def test_every_request_and_response_arrives_as_a_kserve_cloudevent(receiver: EventReceiver, tmp_path: Path) -> None:
    ids = [f"req-{uuid.uuid4().hex[:12]}" for _ in range(REST_REQUESTS)]
    with _logged_server(tmp_path, receiver.url) as server:
        replies = {}
        for seed, request_id in enumerate(ids):
            reply = httpx.post(f"{server.http_url}/v2/models/simple/infer", json=simple_body(seed), headers={"x-request-id": request_id}, timeout=10)
            assert reply.status_code == 200
            replies[request_id] = reply.json()
        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            for index in range(GRPC_REQUESTS):
                request = pb.ModelInferRequest(model_name="simple")
                for name in ("INPUT0", "INPUT1"):
                    request.inputs.add(name=name, datatype="INT32", shape=[1, 16]).contents.int_contents.extend(range(16))
                stub.ModelInfer(request, metadata=(("x-request-id", f"grpc-{index}"),), timeout=10)
        events = receiver.wait_for(2 * (REST_REQUESTS + GRPC_REQUESTS))
        counters = _wait_counted(server, 2 * (REST_REQUESTS + GRPC_REQUESTS))

    by_id: dict[str, dict[str, Event]] = {}
    for event in events:
        headers = event.headers
        assert headers["ce-specversion"] == "1.0"
        assert headers["ce-source"] == f"{server.http_url}/"
        assert (headers["ce-inferenceservicename"], headers["ce-namespace"], headers["ce-component"], headers["ce-endpoint"]) == (
            "simple-isvc", "models", "predictor", "default")  # fmt: skip
        assert headers["ce-time"].endswith("Z")
        by_id.setdefault(headers["ce-id"], {})[headers["ce-type"]] = event
    assert set(by_id) == {*ids, *(f"grpc-{i}" for i in range(GRPC_REQUESTS))}
    for seed, request_id in enumerate(ids):
        pair = by_id[request_id]
        assert set(pair) == {REQUEST_TYPE, RESPONSE_TYPE}
        assert json.loads(pair[REQUEST_TYPE].body) == simple_body(seed)
        assert json.loads(pair[RESPONSE_TYPE].body) == replies[request_id]
        assert pair[REQUEST_TYPE].headers["content-type"].startswith("application/json")
        assert pair[REQUEST_TYPE].headers["ce-kubemindroute"] == "infer"
    grpc_request = by_id["grpc-0"][REQUEST_TYPE]
    assert grpc_request.headers["content-type"] == GRPC_REQUEST_CONTENT_TYPE
    assert pb.ModelInferRequest.FromString(grpc_request.body).model_name == "simple"
    assert counters["kubemind_payload_events_sent_total[request]"] == REST_REQUESTS + GRPC_REQUESTS
    assert counters["kubemind_payload_events_sent_total[response]"] == REST_REQUESTS + GRPC_REQUESTS
    assert not any(k.startswith("kubemind_payload_events_dropped_total") and v for k, v in counters.items())


async def test_a_streamed_reply_is_logged_whole_once_the_stream_ends(receiver: EventReceiver) -> None:
    """KServe's agent logs a stream's body after the handler returns; so does kubemind: the
    response event of a v2 generate_stream and of an OpenAI stream is every SSE event as sent
    (`text/event-stream`), under the request's id, after the request's own event."""
    import asyncio

    settings = ComponentSettings(host="127.0.0.1", http_port=0, grpc_port=0, grace_period_seconds=0, log_requests=False,
                                 log_url=receiver.url, inference_service="echo-isvc")  # fmt: skip
    server = KubemindServer(settings, [EchoGenerator()])
    await server.start()
    calls = {
        "stream-v2": ("/v2/models/echo/generate_stream", {"text_input": "a b c"}),
        "stream-openai": ("/openai/v1/completions", {"model": "echo", "prompt": "hello", "stream": True}),
    }
    replies: dict[str, httpx.Response] = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10) as client:
            for request_id, (path, body) in calls.items():
                replies[request_id] = await client.post(path, json=body, headers={"x-request-id": request_id})
                assert replies[request_id].status_code == 200, replies[request_id].text
        events = await asyncio.to_thread(receiver.wait_for, 2 * len(calls))
        # The sender counts an event once the sink's answer is back, a moment after the receiver
        # has it.
        sent = None
        for _ in range(100):
            sent = server.metrics.registry.get_sample_value("kubemind_payload_events_sent_total", {"type": "response"})
            if sent == len(calls):
                break
            await asyncio.sleep(0.05)
    finally:
        await server.stop()

    assert len(events) == 2 * len(calls)
    for request_id, (_, body) in calls.items():
        mine = [e for e in events if e.headers["ce-id"] == request_id]
        assert [e.headers["ce-type"] for e in mine] == [REQUEST_TYPE, RESPONSE_TYPE]  # in that order
        request, response = mine
        assert json.loads(request.body) == body
        assert response.headers["content-type"] == "text/event-stream"
        assert response.body == replies[request_id].content  # the whole stream, as the client got it
        assert response.headers["ce-inferenceservicename"] == "echo-isvc"
        # The drift service reads it as the one reply it adds up to.
        words = len((body.get("text_input") or body.get("prompt") or "").split())
        assert rows_of_event(response.headers, response.body) == [{"completion_tokens": float(words)}]
    v2_events = [line for line in replies["stream-v2"].text.splitlines() if line.startswith("data: ")]
    assert len(v2_events) == 3  # one event a word: the logged body holds them all
    assert replies["stream-openai"].text.rstrip().endswith("data: [DONE]")
    assert sent == len(calls)


def _stream_request(model: str, request_id: str, text: str | None = None, stream: bool = False) -> pb.ModelInferRequest:
    """A request as tritonclient's async_stream_infer sends it (text_input, a BOOL stream input),
    or the `simple` model's two INT32 inputs."""
    request = pb.ModelInferRequest(model_name=model, id=request_id)
    if text is None:
        for name in ("INPUT0", "INPUT1"):
            request.inputs.add(name=name, datatype="INT32", shape=[1, 16]).contents.int_contents.extend(range(16))
        return request
    request.inputs.add(name="text_input", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[text.encode()]))
    request.inputs.add(name="stream", datatype="BOOL", shape=[1], contents=pb.InferTensorContents(bool_contents=[stream]))
    return request


async def _stream_server(receiver: EventReceiver, **settings: Any) -> KubemindServer:
    options: dict[str, Any] = {"host": "127.0.0.1", "http_port": 0, "grpc_port": 0, "grace_period_seconds": 0, "log_requests": False,
                               "log_url": receiver.url, "inference_service": "stream-isvc", **settings}  # fmt: skip
    server = KubemindServer(ComponentSettings(**options), [EchoGenerator(), SimpleModel()])
    await server.start()
    return server


async def _model_stream_infer(
    server: KubemindServer, requests: list[pb.ModelInferRequest], metadata: tuple[tuple[str, str], ...] = ()
) -> list[ext.ModelStreamInferResponse]:
    """One ModelStreamInfer call: send every request, read until the server ends the call."""
    import grpc.aio

    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        call = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=ext.ModelStreamInferResponse.FromString,
        )(iter(requests), metadata=metadata)
        return [answer async for answer in call]


async def _sent(server: KubemindServer, kind: str, count: int) -> float | None:
    """The sent counter of `kind`, once it reaches `count` (the sender counts an event once the
    sink's answer is back, a moment after the receiver has it)."""
    import asyncio

    value = None
    for _ in range(100):
        value = server.metrics.registry.get_sample_value("kubemind_payload_events_sent_total", {"type": kind})
        if value == count:
            break
        await asyncio.sleep(0.05)
    return value


async def test_each_request_on_a_model_stream_infer_call_is_logged_with_the_reply_it_adds_up_to(receiver: EventReceiver) -> None:
    """Triton's bidirectional stream: each request on it gets its own request event (the
    ModelInferRequest as sent) and one response event once its last response is sent: for a
    decoupled generation, the one ModelInferResponse whose text_output is the whole text (as a
    streamed REST reply's event is its whole body); for one response, that response as sent.
    A request that failed gets its request event only, as a failed ModelInfer does."""
    import asyncio

    requests = [
        _stream_request("echo", "gen-stream", "a b c", stream=True),
        _stream_request("echo", "gen-whole", "x y", stream=False),
        _stream_request("simple", "simple-1"),
        _stream_request("no-such-model", "unknown-1"),
    ]
    server = await _stream_server(receiver)
    try:
        answers = await _model_stream_infer(server, requests)
        events = await asyncio.to_thread(receiver.wait_for, 7)
        sent = {kind: await _sent(server, kind, count) for kind, count in (("request", 4), ("response", 3))}
    finally:
        await server.stop()

    replies: dict[str, list[pb.ModelInferResponse]] = {}
    for answer in answers:
        if answer.infer_response:
            reply = pb.ModelInferResponse.FromString(answer.infer_response)
            replies.setdefault(reply.id, []).append(reply)
    assert [r.raw_output_contents[0][4:] for r in replies["gen-stream"]] == [b"a ", b"b ", b"c"]  # decoupled: one a word
    failures = [answer.error_message for answer in answers if answer.error_message]
    assert len(failures) == 1 and "no-such-model" in failures[0]

    assert len(events) == 7 and sent == {"request": 4, "response": 3}
    by_message_id: dict[str, list[Event]] = {}
    for event in events:
        assert event.headers["ce-kubemindroute"] == "ModelStreamInfer"
        assert event.headers["ce-inferenceservicename"] == "stream-isvc"
        message = (pb.ModelInferRequest if event.headers["ce-type"] == REQUEST_TYPE else pb.ModelInferResponse).FromString(event.body)
        by_message_id.setdefault(message.id, []).append(event)
    for request in requests:
        # A batch's events go over several connections at once: the receiver's order is not the queue's.
        mine = sorted(by_message_id[request.id], key=lambda e: e.headers["ce-type"] != REQUEST_TYPE)
        assert [e.headers["ce-type"] for e in mine] == ([REQUEST_TYPE] if request.id == "unknown-1" else [REQUEST_TYPE, RESPONSE_TYPE])
        assert mine[0].headers["content-type"] == GRPC_REQUEST_CONTENT_TYPE
        assert mine[0].body == request.SerializeToString()
        assert len({e.headers["ce-id"] for e in mine}) == 1  # a request and its response share the request id
        if request.id != "unknown-1":
            assert (mine[0].headers["ce-modelname"], mine[0].headers["ce-modelversion"]) == (request.model_name, replies[request.id][-1].model_version)
            assert mine[1].headers["content-type"] == GRPC_RESPONSE_CONTENT_TYPE
    assert len({by_message_id[r.id][0].headers["ce-id"] for r in requests}) == len(requests)  # each its own id

    streamed = next(e for e in by_message_id["gen-stream"] if e.headers["ce-type"] == RESPONSE_TYPE)
    assembled = pb.ModelInferResponse.FromString(streamed.body)
    assert (assembled.model_name, assembled.id, [o.name for o in assembled.outputs]) == ("echo", "gen-stream", ["text_output"])
    assert assembled.raw_output_contents[0][4:] == b"a b c" and assembled.parameters["triton_final_response"].bool_param
    # The drift service reads it as the one reply it is.
    assert rows_of_event(streamed.headers, streamed.body) == [{"completion_tokens": 3.0}]  # as a REST stream's
    for one_reply in ("gen-whole", "simple-1"):
        response = next(e for e in by_message_id[one_reply] if e.headers["ce-type"] == RESPONSE_TYPE)
        assert response.body == replies[one_reply][0].SerializeToString()  # the response as sent


async def test_a_model_stream_infer_request_is_sampled_by_its_request_id(receiver: EventReceiver) -> None:
    """At a sampling rate, a streamed request is logged or not by its request id (the call's
    x-request-id), both of its events together, like every other route's."""
    import asyncio

    ids = [f"s-{index}" for index in range(40)]
    kept = next(i for i in ids if sampled(i, 0.5))
    dropped = next(i for i in ids if not sampled(i, 0.5))
    server = await _stream_server(receiver, log_sample_rate=0.5)
    try:
        for request_id in (dropped, kept):
            answers = await _model_stream_infer(server, [_stream_request("echo", request_id, "a b", stream=True)], (("x-request-id", request_id),))
            assert len(answers) == 2 and not any(answer.error_message for answer in answers)
        events = await asyncio.to_thread(receiver.wait_for, 2)
        sent = await _sent(server, "response", 1)
        sampled_out = server.metrics.registry.get_sample_value("kubemind_payload_events_sampled_out_total")
    finally:
        await server.stop()
    assert sorted((e.headers["ce-id"], e.headers["ce-type"]) for e in events) == [(kept, REQUEST_TYPE), (kept, RESPONSE_TYPE)]
    assert sent == 1 and sampled_out == 2  # the other request's two events, counted as not made


def test_a_dead_sink_drops_counted_events_and_requests_are_unaffected(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    with _logged_server(tmp_path, dead, "--log_queue_size", "4", "--log_mode", "request", "--log_timeout_seconds", "1") as server:
        statuses = [
            httpx.post(f"{server.http_url}/v2/models/simple/infer", json=simple_body(seed), timeout=10).status_code
            for seed in range(REST_REQUESTS)
        ]
        counters = _wait_counted(server, REST_REQUESTS)

    assert statuses == [200] * REST_REQUESTS
    dropped = {k: v for k, v in counters.items() if k.startswith("kubemind_payload_events_dropped_total")}
    # Requests only (log_mode request), each lost for a reason: refused by the sink, or the
    # queue was full behind it.
    assert sum(dropped.values()) == REST_REQUESTS
    assert dropped.get("kubemind_payload_events_dropped_total[sink_error]", 0) > 0
    assert counters.get("kubemind_payload_events_sent_total[request]", 0) == 0


def test_a_traced_requests_events_carry_its_server_span_as_traceparent(receiver: EventReceiver, tmp_path: Path) -> None:
    """The distributed-tracing extension: both events of a traced request name its server span
    (a child of the caller's trace), the span the OTLP receiver got."""
    from tests.otlp_receiver import ReceiverProcess

    caller_trace, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    otlp = ReceiverProcess()
    try:
        args = ["--model_name", "simple", "--log_url", receiver.url]
        with running_server("kubemind_predictors.simple", args, tmp_path / "server.log", env=otlp.env("logged", "http/protobuf")) as server:
            headers = {"x-request-id": "traced-1", "traceparent": f"00-{caller_trace}-{caller_span}-01"}
            reply = httpx.post(f"{server.http_url}/v2/models/simple/infer", json=simple_body(0), headers=headers, timeout=10)
            assert reply.status_code == 200
            events = receiver.wait_for(2)
            spans = otlp.wait_for(lambda found: any(s.service == "logged" and s.name == "rest infer" for s in found))
    finally:
        otlp.stop()
    server_span = next(s for s in spans if s.service == "logged" and s.name == "rest infer")
    assert (server_span.trace_id, server_span.parent_span_id) == (caller_trace, caller_span)
    assert [e.headers["ce-traceparent"] for e in events] == [f"00-{caller_trace}-{server_span.span_id}-01"] * 2


async def test_pipelined_events_reach_a_sink_that_closes_every_connection() -> None:
    """The sender pipelines a batch on each connection; a sink that answers `Connection: close`
    (and reads nothing after it) still gets every event exactly once, each counted sent."""
    import asyncio

    from kubemind.payload_logger import HttpSink, PayloadEvent

    received: list[bytes] = []

    async def one_request_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        received.append(await reader.readexactly(length))
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(one_request_per_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sink = HttpSink(f"http://127.0.0.1:{port}/", timeout=5)
    events = [PayloadEvent({"id": str(i), "type": REQUEST_TYPE}, f"body-{i}".encode(), "application/json") for i in range(20)]
    try:
        outcomes = await sink.send(events)
    finally:
        await sink.stop()
        server.close()
    assert outcomes == [None] * 20
    assert sorted(received) == sorted(e.body for e in events)  # each once


def test_sampling_keeps_a_request_and_its_response_together() -> None:
    ids = [uuid.uuid4().hex for _ in range(4000)]
    kept = [i for i in ids if sampled(i, 0.25)]
    assert 0.2 < len(kept) / len(ids) < 0.3
    assert kept == [i for i in ids if sampled(i, 0.25)]  # the same answer for the response event
    assert all(sampled(i, 1.0) for i in ids) and not any(sampled(i, 0.0) for i in ids)


def test_a_kafka_sink_gets_the_events_in_the_kafka_binding(tmp_path: Path) -> None:
    """kafka://host:port/topic: each event a record keyed by request id, ce_* headers."""
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    broker = TansuBroker().start(tmp_path / "tansu.log")
    try:

        async def create_topic() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic("payloads", num_partitions=1, replication_factor=1)])
            finally:
                await admin.close()

        asyncio.run(create_topic())
        with _logged_server(tmp_path, f"kafka://{broker.bootstrap}/payloads") as server:
            for seed in range(3):
                reply = httpx.post(f"{server.http_url}/v2/models/simple/infer", json=simple_body(seed), headers={"x-request-id": f"k-{seed}"}, timeout=10)
                assert reply.status_code == 200
            counters = _wait_counted(server, 6)

        async def consume() -> list[tuple[bytes, dict[str, bytes], bytes]]:
            consumer = AIOKafkaConsumer("payloads", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", group_id="check")
            await consumer.start()
            try:
                records: list[tuple[bytes, dict[str, bytes], bytes]] = []
                while len(records) < 6:
                    batch = await consumer.getmany(timeout_ms=5000)
                    assert batch, f"{len(records)} of 6 records"
                    records += [(r.key, dict(r.headers), r.value) for part in batch.values() for r in part]
                return records
            finally:
                await consumer.stop()

        records = asyncio.run(consume())
    finally:
        broker.stop()

    assert counters["kubemind_payload_events_sent_total[request]"] == 3
    assert {key for key, _, _ in records} == {b"k-0", b"k-1", b"k-2"}
    for key, headers, value in records:
        assert headers["ce_id"] == key and headers["ce_specversion"] == b"1.0"
        assert headers["ce_type"] in (REQUEST_TYPE.encode(), RESPONSE_TYPE.encode())
        assert headers["ce_inferenceservicename"] == b"simple-isvc" and headers["content-type"].startswith(b"application/json")
        if headers["ce_type"] == REQUEST_TYPE.encode():
            assert json.loads(value) == simple_body(int(key.decode()[2:]))
