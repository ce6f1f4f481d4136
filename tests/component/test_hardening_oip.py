"""Issue 18, OIP core: what fuzzing and a clumsy client found on the v2 REST and gRPC servers.

Each bad request is a 4xx (INVALID_ARGUMENT over gRPC) whose message names the field; nothing
a client sends becomes a 500, a traceback, a held connection or a misleading status.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from kubemind.processes import ServerProcess
from kubemind.server import KubemindServer
from kubemind.settings import ComponentSettings
from kubemind.telemetry import ACCESS_LOGGER
from kubemind_predictors.simple import SimpleModel

LIMIT = 4 * 1024 * 1024  # the simple_server fixture's --max_request_bytes


def rest_tensor(name: str, shape: list[int], data: list[Any] | None = None) -> dict[str, Any]:
    count = 1
    for dim in shape:
        count *= dim
    return {"name": name, "datatype": "INT32", "shape": shape, "data": data if data is not None else [1] * count}


def grpc_request(*tensors: tuple[str, list[int]], **parameters: Any) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="simple")
    for name, shape in tensors:
        count = 1
        for dim in shape:
            count *= dim
        request.inputs.add(name=name, datatype="INT32", shape=shape).contents.int_contents.extend([1] * count)
    for key, value in parameters.items():
        request.parameters[key].string_param = value
    return request


@pytest.fixture(scope="module")
def http(simple_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=simple_server.http_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def stub(simple_server: ServerProcess) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(simple_server.grpc_address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def rest_error(http: httpx.Client, body: dict[str, Any], status: int = 400, **kwargs: Any) -> str:
    reply = http.post("/v2/models/simple/infer", json=body, **kwargs)
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    message = reply.json()["error"]
    assert isinstance(message, str)
    return message


def grpc_error(stub: pb_grpc.GRPCInferenceServiceStub, request: pb.ModelInferRequest) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return str(caught.value.details())


# -- headers and shapes ---------------------------------------------------------------------------
def test_non_ascii_digit_in_the_json_length_header_is_400(http: httpx.Client) -> None:
    body = json.dumps({"inputs": [rest_tensor("INPUT0", [1, 16]), rest_tensor("INPUT1", [1, 16])]}).encode()
    reply = http.post(
        "/v2/models/simple/infer",
        content=body,
        headers={"Inference-Header-Content-Length": b"\xb2", "Content-Type": "application/octet-stream"},
    )
    assert reply.status_code == 400
    assert "inference-header-content-length must be a non-negative integer" in reply.json()["error"]


def test_more_than_64_dimensions_is_400_over_rest_and_grpc(http: httpx.Client, stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    shape = [1] * 65
    message = rest_error(http, {"inputs": [rest_tensor("INPUT0", shape), rest_tensor("INPUT1", [1, 16])]})
    assert message == "input 'INPUT0': shape has 65 dimensions, more than the 64 allowed"
    assert grpc_error(stub, grpc_request(("INPUT0", shape), ("INPUT1", [1, 16]))) == message


def test_a_zero_element_shape_with_huge_dimensions_is_400(http: httpx.Client, stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    shape = [2**62, 2**62, 0]
    message = rest_error(http, {"inputs": [rest_tensor("INPUT0", shape, []), rest_tensor("INPUT1", [1, 16])]})
    assert message.startswith("input 'INPUT0': shape [4611686018427387904, 4611686018427387904, 0] is larger")
    assert grpc_error(stub, grpc_request(("INPUT0", shape), ("INPUT1", [1, 16]))) == message


@pytest.mark.parametrize("shapes", [([3, 16], [2, 16]), ([1, 16], [2, 16])], ids=["3-vs-2", "1-vs-2-not-broadcast"])
def test_inputs_with_different_batch_sizes_are_400_naming_both(
    http: httpx.Client, stub: pb_grpc.GRPCInferenceServiceStub, shapes: tuple[list[int], list[int]]
) -> None:
    first, second = shapes
    message = rest_error(http, {"inputs": [rest_tensor("INPUT0", first), rest_tensor("INPUT1", second)]})
    assert message.startswith(
        f"inputs 'INPUT0' and 'INPUT1' have different batch sizes ({first[0]} and {second[0]})"
    )
    assert grpc_error(stub, grpc_request(("INPUT0", first), ("INPUT1", second))) == message


def test_equal_batch_sizes_still_serve(http: httpx.Client) -> None:
    reply = http.post("/v2/models/simple/infer", json={"inputs": [rest_tensor("INPUT0", [2, 16]), rest_tensor("INPUT1", [2, 16])]})
    assert reply.status_code == 200
    assert reply.json()["outputs"][0]["shape"] == [2, 16]


def test_a_100_kb_input_name_is_invalid_argument_not_resource_exhausted(
    http: httpx.Client, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    name = "x" * 100_000
    message = rest_error(http, {"inputs": [rest_tensor(name, [1, 16]), rest_tensor("INPUT1", [1, 16])]})
    assert message.startswith("inputs[0].name is 100000 characters long, more than the 256 allowed")
    assert len(message) < 200
    assert grpc_error(stub, grpc_request((name, [1, 16]), ("INPUT1", [1, 16]))) == message


def test_a_100_kb_model_name_over_grpc_is_not_found_with_a_short_message(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    request = grpc_request(("INPUT0", [1, 16]), ("INPUT1", [1, 16]))
    request.model_name = "m" * 100_000
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(str(caught.value.details())) < 400


# -- protocol parameters --------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["false", 1, None], ids=["string", "int", "null-is-absent"])
def test_binary_data_output_must_be_a_boolean(http: httpx.Client, value: Any) -> None:
    body = {"inputs": [rest_tensor("INPUT0", [1, 16]), rest_tensor("INPUT1", [1, 16])], "parameters": {"binary_data_output": value}}
    if value is None:
        assert http.post("/v2/models/simple/infer", json=body).status_code == 200
        return
    message = rest_error(http, body)
    assert message == f"parameters.binary_data_output: must be a boolean, got {value!r}"


def test_binary_data_output_must_be_a_boolean_over_grpc(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    message = grpc_error(stub, grpc_request(("INPUT0", [1, 16]), ("INPUT1", [1, 16]), binary_data_output="true"))
    assert message == "parameters.binary_data_output: must be a boolean, got 'true'"


def test_an_outputs_binary_data_must_be_a_boolean(http: httpx.Client) -> None:
    body = {
        "inputs": [rest_tensor("INPUT0", [1, 16]), rest_tensor("INPUT1", [1, 16])],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": "no"}}],
    }
    assert rest_error(http, body) == "output 'OUTPUT0': parameters.binary_data must be a boolean, got 'no'"


# -- content encoding and methods -----------------------------------------------------------------
def golden_body() -> bytes:
    return json.dumps({"inputs": [rest_tensor("INPUT0", [1, 16], list(range(16))), rest_tensor("INPUT1", [1, 16])]}).encode()


def test_a_gzip_body_is_decompressed(http: httpx.Client) -> None:
    reply = http.post(
        "/v2/models/simple/infer", content=gzip.compress(golden_body()), headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == [i + 1 for i in range(16)]


def test_a_gzip_bomb_is_413_once_decompressed(http: httpx.Client) -> None:
    bomb = gzip.compress(b" " * (LIMIT + 1024 * 1024), compresslevel=9)
    assert len(bomb) < 64 * 1024
    reply = http.post("/v2/models/simple/infer", content=bomb, headers={"Content-Encoding": "gzip"})
    assert reply.status_code == 413
    assert reply.json() == {"error": f"request body is over the {LIMIT}-byte limit once decompressed"}


def test_corrupt_gzip_is_400(http: httpx.Client) -> None:
    reply = http.post("/v2/models/simple/infer", content=gzip.compress(golden_body())[:-12], headers={"Content-Encoding": "gzip"})
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("request body: gzip data is truncated")


def test_an_unsupported_content_encoding_is_415(http: httpx.Client) -> None:
    reply = http.post("/v2/models/simple/infer", content=golden_body(), headers={"Content-Encoding": "br"})
    assert reply.status_code == 415
    assert reply.json() == {"error": "Content-Encoding 'br' is not supported (send identity or gzip)"}


@pytest.mark.parametrize(("method", "path", "allowed"), [("DELETE", "/v2/models/simple/infer", "POST"), ("POST", "/v2/health/live", "GET")])
def test_405_carries_allow(http: httpx.Client, method: str, path: str, allowed: str) -> None:
    reply = http.request(method, path)
    assert reply.status_code == 405
    assert allowed in [m.strip() for m in reply.headers["allow"].split(",")]
    assert reply.json() == {"error": "Method Not Allowed"}


# -- connections that misbehave (an in-process server with short read timeouts) --------------------
@pytest.fixture
async def quick_server() -> AsyncIterator[KubemindServer]:
    settings = ComponentSettings(
        host="127.0.0.1",
        http_port=0,
        grpc_port=0,
        enable_grpc=False,
        grace_period_seconds=0,
        header_read_timeout_seconds=1,
        body_read_timeout_seconds=1,
    )
    server = KubemindServer(settings, [SimpleModel("simple")])
    await server.start()
    yield server
    await server.stop()


async def read_until_closed(port: int, first: bytes) -> bytes:
    """Send `first`, then nothing more; what the server answers before it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), timeout=60)  # the server closes long before
    finally:
        writer.close()


async def test_a_request_whose_headers_never_finish_gets_408_and_is_closed(quick_server: KubemindServer) -> None:
    reply = await read_until_closed(quick_server.http_port, b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\n")
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert reply.endswith(b'{"error":"request headers not received within 1 s"}')


async def test_a_body_that_never_finishes_gets_408_and_is_closed(quick_server: KubemindServer) -> None:
    head = b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    reply = await read_until_closed(quick_server.http_port, head + b'{"inputs": [')
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert reply.endswith(b'{"error":"request body not received within 1 s"}')
    async with httpx.AsyncClient() as client:  # and the server keeps serving
        assert (await client.get(f"http://127.0.0.1:{quick_server.http_port}/v2/health/live")).status_code == 200


async def test_a_client_hanging_up_mid_body_is_not_a_server_error(
    quick_server: KubemindServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    head = b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    sock = socket.create_connection(("127.0.0.1", quick_server.http_port))
    sock.sendall(head + b'{"inputs": [')
    sock.close()
    access: list[dict[str, Any]] = []
    for _ in range(600):  # the access line is written once the endpoint has given up
        access = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
        if access:
            break
        await asyncio.sleep(0.05)
    assert access and access[0]["status"] == 400, access
    assert access[0]["error"] == "the client closed the connection before the request body was complete"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_batch_zero_is_400_over_rest_and_grpc(http: httpx.Client, stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    message = rest_error(http, {"inputs": [rest_tensor("INPUT0", [0, 16]), rest_tensor("INPUT1", [0, 16])]})
    assert message == "input 'INPUT0': batch size 0: a request carries at least one inference"
    assert grpc_error(stub, grpc_request(("INPUT0", [0, 16]), ("INPUT1", [0, 16]))) == message
