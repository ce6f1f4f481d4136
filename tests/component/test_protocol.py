"""The whole Open Inference Protocol on a real `simple` server process: paths, versions, bad
input, limits, encodings, telemetry and lifecycle."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from kubemind.processes import ServerProcess, start_server

INPUT0 = np.arange(16, dtype=np.int32).reshape(1, 16)
INPUT1 = np.full((1, 16), 3, dtype=np.int32)
SUM, DIFF = (INPUT0 + INPUT1).tolist(), (INPUT0 - INPUT1).tolist()
LIMIT = 4 * 1024 * 1024  # the fixture's --max_request_bytes


def golden_json() -> dict[str, Any]:
    return {
        "id": "golden-1",
        "inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": INPUT0.reshape(-1).tolist()},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": INPUT1.tolist()},  # nested
        ],
    }


def tensor(name: str = "INPUT0", **overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "datatype": "INT32", "shape": [1, 16], "data": list(range(16))}
    entry.update(overrides)
    return entry


@pytest.fixture(scope="module")
def http(simple_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=simple_server.http_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def grpc_stub(simple_server: ServerProcess) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(simple_server.grpc_address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


# -- paths and versions ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready", "/v2/models/simple/ready", "/v2/models/simple/versions/2/ready"])
def test_health_endpoints(http: httpx.Client, path: str) -> None:
    assert http.get(path).status_code == 200


@pytest.mark.parametrize("version", ["1", "2"])
def test_versioned_paths_serve_declared_versions(http: httpx.Client, version: str) -> None:
    assert http.get(f"/v2/models/simple/versions/{version}").json()["versions"] == ["1", "2"]
    reply = http.post(f"/v2/models/simple/versions/{version}/infer", json=golden_json())
    assert reply.status_code == 200
    assert reply.json()["model_version"] == version
    assert http.get(f"/v2/models/simple/versions/{version}/config").status_code == 200
    assert http.get(f"/v2/models/simple/versions/{version}/stats").json()["model_stats"][0]["version"] == version


def test_unversioned_infer_uses_the_highest_version(http: httpx.Client) -> None:
    assert http.post("/v2/models/simple/infer", json=golden_json()).json()["model_version"] == "2"


@pytest.mark.parametrize(
    "path",
    ["/v2/models/simple/versions/3", "/v2/models/simple/versions/3/ready", "/v2/models/nosuch", "/v2/models/nosuch/config"],
)
def test_unknown_model_or_version_is_404(http: httpx.Client, path: str) -> None:
    reply = http.get(path)
    assert reply.status_code == 404
    assert "error" in reply.json()


def test_unknown_version_infer_is_404_naming_it(http: httpx.Client) -> None:
    reply = http.post("/v2/models/simple/versions/7/infer", json=golden_json())
    assert reply.status_code == 404
    assert reply.json()["error"].startswith("Request for unknown model: 'simple' version 7 is not found")


def test_json_without_content_type_is_accepted(http: httpx.Client) -> None:
    # tritonclient.http sends no Content-Type.
    reply = http.post("/v2/models/simple/infer", content=orjson.dumps(golden_json()), headers={"content-type": ""})
    assert reply.status_code == 200
    assert reply.json()["outputs"][0]["data"] == INPUT0.reshape(-1).__add__(3).tolist()


# -- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ([tensor(datatype="FP32", data=[0.5] * 16), tensor("INPUT1")], "input 'INPUT0': datatype FP32 does not match the model's INT32"),
        ([tensor(shape=[1, 15]), tensor("INPUT1")], "input 'INPUT0': data has 16 elements but shape [1, 15] needs 15"),
        ([tensor(), tensor("INPUT9")], "unknown input 'INPUT9'"),
        ([tensor()], "missing input(s) INPUT1"),
        ([tensor(shape=[-1, 16]), tensor("INPUT1")], "input 'INPUT0': shape [-1, 16] has a negative dimension"),
        ([tensor(shape=[2**40, 2**40]), tensor("INPUT1")], "input 'INPUT0': data has 16 elements but shape"),
        ([tensor(shape=[16], data=list(range(16))), tensor("INPUT1")], "input 'INPUT0': shape [16] does not match the model's [-1, 16]"),
        ([tensor(shape=[9, 16], data=[0] * 144), tensor("INPUT1", shape=[9, 16], data=[0] * 144)], "batch size 9 exceeds the model's max_batch_size 8"),
        ([tensor(datatype="INT7"), tensor("INPUT1")], "input 'INPUT0': datatype: unknown datatype 'INT7'"),
    ],
)
def test_bad_tensors_get_400_naming_the_tensor(http: httpx.Client, inputs: list[dict[str, Any]], expected: str) -> None:
    reply = http.post("/v2/models/simple/infer", json={"inputs": inputs})
    assert reply.status_code == 400
    assert expected in reply.json()["error"]


@pytest.mark.parametrize(
    "body",
    [b"{", b"", b"null", b'{"inputs": "nope"}', b"[" * 10_000 + b"]" * 10_000, b'{"inputs": [' + b"[" * 10_000 + b"]" * 10_000 + b"]}"],
    ids=["truncated", "empty", "null", "inputs-not-list", "nested-10k", "nested-10k-in-inputs"],
)
def test_malformed_bodies_get_400(http: httpx.Client, body: bytes) -> None:
    reply = http.post("/v2/models/simple/infer", content=body)
    assert reply.status_code == 400
    assert reply.json()["error"]


def test_body_over_limit_is_413(http: httpx.Client) -> None:
    reply = http.post("/v2/models/simple/infer", content=b" " * (LIMIT + 1))
    assert reply.status_code == 413
    assert "limit" in reply.json()["error"]


def test_chunked_body_over_limit_is_413(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b" " * (LIMIT // 4)

    reply = http.post("/v2/models/simple/infer", content=chunks())
    assert reply.status_code == 413


def test_grpc_message_over_limit_is_resource_exhausted(grpc_stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    request = pb.ModelInferRequest(model_name="simple")
    request.inputs.add(name="INPUT0", datatype="INT32", shape=[1, LIMIT // 4 + 1])
    request.raw_input_contents.append(b"\x00" * (LIMIT + 4))
    with pytest.raises(grpc.RpcError) as caught:
        grpc_stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("shape", "raw", "expected"),
    [
        ([1, 16], b"\x00" * 60, "input 'INPUT0': data has 60 bytes but shape [1, 16] needs 64"),
        ([-1, 16], b"\x00" * 64, "input 'INPUT0': shape [-1, 16] has a negative dimension"),
        ([2**62, 2**62], b"\x00" * 64, "input 'INPUT0': data has 64 bytes but shape"),
    ],
)
def test_grpc_bad_tensors_are_invalid_argument(grpc_stub: pb_grpc.GRPCInferenceServiceStub, shape: list[int], raw: bytes, expected: str) -> None:
    request = pb.ModelInferRequest(model_name="simple")
    request.inputs.add(name="INPUT0", datatype="INT32", shape=shape)
    request.inputs.add(name="INPUT1", datatype="INT32", shape=[1, 16])
    request.raw_input_contents.extend([raw, b"\x00" * 64])
    with pytest.raises(grpc.RpcError) as caught:
        grpc_stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in caught.value.details()


def test_grpc_unknown_model_is_not_found(grpc_stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        grpc_stub.ModelMetadata(pb.ModelMetadataRequest(name="nosuch"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_server_survives_bad_input(http: httpx.Client) -> None:
    assert http.post("/v2/models/simple/infer", json=golden_json()).status_code == 200


# -- one golden request, four encodings ------------------------------------------------------------
def _binary_request() -> tuple[bytes, int]:
    header = orjson.dumps(
        {
            "id": "golden-1",
            "inputs": [
                {"name": n, "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}}
                for n in ("INPUT0", "INPUT1")
            ],
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in ("OUTPUT0", "OUTPUT1")],
        }
    )
    return header + INPUT0.tobytes() + INPUT1.tobytes(), len(header)


def test_golden_request_is_equal_over_every_encoding(http: httpx.Client, grpc_stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    results: dict[str, dict[str, list[int]]] = {}

    as_json = http.post("/v2/models/simple/infer", json=golden_json()).json()
    results["rest-json"] = {o["name"]: o["data"] for o in as_json["outputs"]}

    body, json_length = _binary_request()
    reply = http.post("/v2/models/simple/infer", content=body, headers={"Inference-Header-Content-Length": str(json_length)})
    assert reply.headers["content-type"] == "application/octet-stream"
    header_length = int(reply.headers["inference-header-content-length"])
    header = orjson.loads(reply.content[:header_length])
    assert header["id"] == "golden-1"
    blobs, offset = {}, header_length
    for output in header["outputs"]:
        size = output["parameters"]["binary_data_size"]
        blobs[output["name"]] = np.frombuffer(reply.content[offset : offset + size], dtype=np.int32).tolist()
        offset += size
    results["rest-binary"] = blobs

    contents = pb.ModelInferRequest(model_name="simple", id="golden-1")
    for name, array in (("INPUT0", INPUT0), ("INPUT1", INPUT1)):
        contents.inputs.add(name=name, datatype="INT32", shape=[1, 16]).contents.int_contents.extend(array.reshape(-1).tolist())
    contents_reply = grpc_stub.ModelInfer(contents)
    # contents in -> raw out, as Triton answers (tritonclient reads only raw_output_contents)
    assert not any(o.HasField("contents") for o in contents_reply.outputs)
    results["grpc-contents"] = {
        o.name: np.frombuffer(blob, dtype=np.int32).tolist()
        for o, blob in zip(contents_reply.outputs, contents_reply.raw_output_contents, strict=True)
    }

    raw = pb.ModelInferRequest(model_name="simple", id="golden-1")
    for name, array in (("INPUT0", INPUT0), ("INPUT1", INPUT1)):
        raw.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        raw.raw_input_contents.append(array.tobytes())
    raw_reply = grpc_stub.ModelInfer(raw)
    assert raw_reply.id == "golden-1"
    results["grpc-raw"] = {
        o.name: np.frombuffer(blob, dtype=np.int32).tolist() for o, blob in zip(raw_reply.outputs, raw_reply.raw_output_contents, strict=True)
    }

    expected = {"OUTPUT0": SUM[0], "OUTPUT1": DIFF[0]}
    for encoding, outputs in results.items():
        flat = {name: np.asarray(values).reshape(-1).tolist() for name, values in outputs.items()}
        assert flat == expected, encoding


# -- telemetry --------------------------------------------------------------------------------------
def test_trace_headers_are_echoed_and_logged_once(http: httpx.Client, simple_server: ServerProcess) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    reply = http.post(
        "/v2/models/simple/infer",
        json=golden_json(),
        headers={"x-request-id": "req-trace-1", "traceparent": traceparent, "x-b3-traceid": "abc", "x-not-allowed": "secret"},
    )
    assert reply.headers["x-request-id"] == "req-trace-1"
    lines = [json.loads(line) for line in simple_server.log().splitlines() if '"req-trace-1"' in line]
    assert len(lines) == 1, "exactly one log line per request"
    (line,) = lines
    assert line["status"] == 200 and line["model"] == "simple" and line["endpoint"] == "infer"
    assert line["trace"] == {"traceparent": traceparent, "x-b3-traceid": "abc"}
    assert set(line["stages_ms"]) == {"decode", "infer", "encode"}


def test_requests_without_an_id_get_one(http: httpx.Client) -> None:
    first = http.get("/v2/health/live").headers["x-request-id"]
    second = http.get("/v2/health/live").headers["x-request-id"]
    assert first and second and first != second


def test_metrics_count_requests_and_stage_latency(http: httpx.Client) -> None:
    http.post("/v2/models/simple/infer", json=golden_json())
    http.post("/v2/models/simple/infer", json={"inputs": [tensor()]})
    text = http.get("/metrics").text
    assert 'kubemind_requests_total{code="200",endpoint="infer",model="simple",protocol="rest",revision=""}' in text
    assert 'kubemind_requests_total{code="400",endpoint="infer",model="simple",protocol="rest",revision=""}' in text
    assert 'kubemind_stage_duration_seconds_count{model="simple",stage="decode"}' in text
    assert 'kubemind_request_duration_seconds_bucket{endpoint="infer",le="0.001",model="simple",protocol="rest",revision=""}' in text


# -- binding and lifecycle --------------------------------------------------------------------------
def _proc_address(hex_address: str) -> str:
    """/proc/net/tcp{,6} addresses are little-endian 32-bit words; v4-mapped v6 shown as v4."""
    raw = bytes.fromhex(hex_address)
    ordered = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(ordered)
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses in LISTEN state on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:
                found.add(_proc_address(address))
    return found


def test_host_setting_binds_both_listeners(simple_server: ServerProcess) -> None:
    # KServe would listen on 0.0.0.0 and [::]; --host 127.0.0.1 must keep both listeners private.
    assert _listening_addresses(simple_server.http_port) == {"127.0.0.1"}
    assert _listening_addresses(simple_server.grpc_port) == {"127.0.0.1"}


def test_sigterm_stops_the_server_cleanly(tmp_path: Path) -> None:
    server = start_server("kubemind_predictors.simple", ["--model_name", "simple"], tmp_path / "log")
    os.kill(server.pid, signal.SIGTERM)
    assert server.process.wait(30) == 0
    assert _listening_addresses(server.http_port) == set()
