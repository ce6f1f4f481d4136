"""TritonPredictor in front of a real Triton server: forwarding, metadata, errors, metrics."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton_http
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from kubemind.processes import ServerProcess
from kubemind.protocol.shared_memory import Segment
from kubemind_predictors.triton.launcher import TritonServerProcess
from kubemind_predictors.triton.repository import build_repository, render_config, shipped_model
from tests.component.triton_fixtures import running_predictor, running_triton, stock_client

INPUT0 = np.arange(16, dtype=np.int32).reshape(1, 16)
INPUT1 = np.full((1, 16), 3, dtype=np.int32)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TritonServerProcess, ServerProcess]]:
    workdir = tmp_path_factory.mktemp("triton-predictor")
    with running_triton(workdir, ["simple"]) as triton, running_predictor(triton, workdir) as predictor:
        yield triton, predictor


def simple_body(first: np.ndarray = INPUT0, second: np.ndarray = INPUT1) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": list(first.shape), "data": first.ravel().tolist()},
            {"name": "INPUT1", "datatype": "INT32", "shape": list(second.shape), "data": second.ravel().tolist()},
        ]
    }


def outputs_of(response: httpx.Response) -> dict[str, np.ndarray]:
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}


def test_predictor_answers_like_triton_itself(stack: tuple[TritonServerProcess, ServerProcess]) -> None:
    triton, predictor = stack

    through_predictor = httpx.post(f"{predictor.http_url}/v2/models/simple/infer", json=simple_body(), timeout=10)
    direct = httpx.post(f"{triton.http_url}/v2/models/simple/infer", json=simple_body(), timeout=10)

    assert through_predictor.status_code == 200, through_predictor.text
    ours, theirs = outputs_of(through_predictor), outputs_of(direct)
    np.testing.assert_array_equal(ours["OUTPUT0"], INPUT0 + INPUT1)
    np.testing.assert_array_equal(ours["OUTPUT1"], INPUT0 - INPUT1)
    for name in ("OUTPUT0", "OUTPUT1"):
        np.testing.assert_array_equal(ours[name], theirs[name])


def test_stock_grpc_client_through_the_predictor(stack: tuple[TritonServerProcess, ServerProcess]) -> None:
    _, predictor = stack
    request = {
        "model": "simple",
        "inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": INPUT0.ravel().tolist()},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": INPUT1.ravel().tolist()},
        ],
    }

    (answer,) = stock_client(predictor.grpc_address, request)

    assert np.array_equal(answer["outputs"]["OUTPUT0"], (INPUT0 + INPUT1).tolist())


def test_grpc_passthrough_answers_under_the_served_name_and_checks_the_signature(
    stack: tuple[TritonServerProcess, ServerProcess],
) -> None:
    """gRPC inference is forwarded to Triton as bytes: the reply still names kubemind's model and
    version, and a wrong shape is refused before Triton with the tensor named."""
    _, predictor = stack
    good = {"model": "simple", "inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": INPUT0.ravel().tolist()},
        {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": INPUT1.ravel().tolist()},
    ]}  # fmt: skip
    wrong_shape = {"model": "simple", "inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 8], "data": list(range(8))},
        {"name": "INPUT1", "datatype": "INT32", "shape": [1, 8], "data": list(range(8))},
    ]}  # fmt: skip

    answer, refused = stock_client(predictor.grpc_address, good, wrong_shape)

    assert answer["outputs"]["OUTPUT1"] == (INPUT0 - INPUT1).tolist()
    assert (answer["model_name"], answer["model_version"]) == ("simple", "1")
    assert refused["error"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "INPUT0" in refused["error"]["message"] and "[1, 8]" in refused["error"]["message"]


def test_stock_http_client_binary_requests_answer_like_triton(stack: tuple[TritonServerProcess, ServerProcess]) -> None:
    """tritonclient.http sends binary tensors: the predictor forwards them to Triton as bytes
    (REST passthrough) and answers as Triton does, a binary output and a JSON output alike,
    under kubemind's model name and version."""
    triton, predictor = stack

    def infer(url: str) -> triton_http.InferResult:
        inputs = []
        for name, array in (("INPUT0", INPUT0), ("INPUT1", INPUT1)):
            tensor = triton_http.InferInput(name, list(array.shape), "INT32")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [
            triton_http.InferRequestedOutput("OUTPUT1", binary_data=False),
            triton_http.InferRequestedOutput("OUTPUT0", binary_data=True),
        ]
        client = triton_http.InferenceServerClient(url.removeprefix("http://"))
        try:
            return client.infer("simple", inputs, outputs=outputs, request_id="passthrough-1")
        finally:
            client.close()

    ours, theirs = infer(predictor.http_url), infer(triton.http_url)

    for name in ("OUTPUT0", "OUTPUT1"):
        np.testing.assert_array_equal(ours.as_numpy(name), theirs.as_numpy(name))
    np.testing.assert_array_equal(ours.as_numpy("OUTPUT0"), INPUT0 + INPUT1)
    header = ours.get_response()
    assert [o["name"] for o in header["outputs"]] == ["OUTPUT1", "OUTPUT0"]
    assert header["outputs"][0]["data"] == (INPUT0 - INPUT1).ravel().tolist()
    assert (header["model_name"], header["model_version"], header["id"]) == ("simple", "1", "passthrough-1")


def test_binary_rest_with_a_wrong_byte_count_is_400_naming_the_tensor(
    stack: tuple[TritonServerProcess, ServerProcess],
) -> None:
    _, predictor = stack
    header = orjson.dumps({"inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}},
        {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 10}},
    ]})  # fmt: skip

    response = httpx.post(
        f"{predictor.http_url}/v2/models/simple/infer",
        content=header + b"\0" * 74,
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=10,
    )

    assert response.status_code == 400, response.text
    assert "INPUT1" in response.json()["error"] and "10 bytes" in response.json()["error"]


def test_grpc_input_in_shared_memory_beside_one_on_the_wire(stack: tuple[TritonServerProcess, ServerProcess]) -> None:
    """An input in a system shared-memory region beside one on the wire (what a same-host client
    sends): the predictor reads the region and forwards the bytes on in the inputs' order; an
    output into a region is written there."""
    _, predictor = stack
    segment = Segment(f"/kubemind-test-{os.getpid()}", 2 * INPUT0.nbytes)
    segment.memory[: INPUT0.nbytes] = INPUT0.tobytes()
    registered = httpx.post(
        f"{predictor.http_url}/v2/systemsharedmemory/region/in-out/register",
        json={"key": segment.key, "offset": 0, "byte_size": 2 * INPUT0.nbytes},
        timeout=10,
    )
    assert registered.status_code == 200, registered.text

    def request(output_into_region: bool) -> pb.ModelInferRequest:
        message = pb.ModelInferRequest(model_name="simple")
        first = message.inputs.add(name="INPUT0", datatype="INT32", shape=[1, 16])
        first.parameters["shared_memory_region"].string_param = "in-out"
        first.parameters["shared_memory_byte_size"].int64_param = INPUT0.nbytes
        message.inputs.add(name="INPUT1", datatype="INT32", shape=[1, 16])
        message.raw_input_contents.append(INPUT1.tobytes())
        if output_into_region:
            output = message.outputs.add(name="OUTPUT1")
            output.parameters["shared_memory_region"].string_param = "in-out"
            output.parameters["shared_memory_byte_size"].int64_param = INPUT0.nbytes
            output.parameters["shared_memory_offset"].int64_param = INPUT0.nbytes
        return message

    async def call() -> list[pb.ModelInferResponse]:
        async with grpc.aio.insecure_channel(predictor.grpc_address) as channel:
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            return [await infer(request(False), timeout=10), await infer(request(True), timeout=10)]

    try:
        on_the_wire, _ = asyncio.run(call())
        written = np.frombuffer(bytes(segment.memory[INPUT0.nbytes :]), dtype=np.int32).reshape(1, 16)
    finally:
        httpx.post(f"{predictor.http_url}/v2/systemsharedmemory/unregister", timeout=10)
        segment.close()

    outputs = {
        o.name: np.frombuffer(raw, dtype=np.int32).reshape(1, 16)
        for o, raw in zip(on_the_wire.outputs, on_the_wire.raw_output_contents, strict=True)
    }
    np.testing.assert_array_equal(outputs["OUTPUT0"], INPUT0 + INPUT1)
    np.testing.assert_array_equal(outputs["OUTPUT1"], INPUT0 - INPUT1)
    assert on_the_wire.model_name == "simple"
    np.testing.assert_array_equal(written, INPUT0 - INPUT1)


def test_grpc_passthrough_relays_triton_refusing_the_data(stack: tuple[TritonServerProcess, ServerProcess]) -> None:
    """The passthrough hop does not read the tensor data; Triton checks its size, and its
    INVALID_ARGUMENT reaches the client as one."""
    _, predictor = stack
    request = pb.ModelInferRequest(model_name="simple")
    for name, size in (("INPUT0", 64), ("INPUT1", 10)):  # 10 bytes where 64 belong
        request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        request.raw_input_contents.append(b"\0" * size)

    async def call() -> grpc.aio.AioRpcError:
        async with grpc.aio.insecure_channel(predictor.grpc_address) as channel:
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await infer(request, timeout=10)
            return caught.value

    error = asyncio.run(call())

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert "INPUT1" in (error.details() or ""), error.details()


def test_metadata_and_readiness_reflect_triton(stack: tuple[TritonServerProcess, ServerProcess]) -> None:
    _, predictor = stack

    metadata = httpx.get(f"{predictor.http_url}/v2/models/simple", timeout=10).json()
    ready = httpx.get(f"{predictor.http_url}/v2/models/simple/ready", timeout=10)

    assert metadata["platform"] == "triton"
    assert {i["name"]: i["shape"] for i in metadata["inputs"]} == {"INPUT0": [-1, 16], "INPUT1": [-1, 16]}
    assert ready.status_code == 200


def test_wrong_shape_is_400_naming_the_tensor(stack: tuple[TritonServerProcess, ServerProcess]) -> None:
    _, predictor = stack

    response = httpx.post(
        f"{predictor.http_url}/v2/models/simple/infer",
        json=simple_body(np.zeros((1, 8), np.int32), np.zeros((1, 8), np.int32)),
        timeout=10,
    )

    assert response.status_code == 400
    assert "INPUT0" in response.json()["error"]


def test_unknown_model_is_404(stack: tuple[TritonServerProcess, ServerProcess]) -> None:
    _, predictor = stack

    response = httpx.post(f"{predictor.http_url}/v2/models/resnet/infer", json=simple_body(), timeout=10)

    assert response.status_code == 404


def triton_successes(metrics_text: str, model: str) -> float:
    prefix = f'kubemind_triton_requests_succeeded_total{{model="{model}"}} '
    lines = [line for line in metrics_text.splitlines() if line.startswith(prefix)]
    return float(lines[0][len(prefix) :]) if lines else 0.0


def test_triton_queue_metrics_are_exported(stack: tuple[TritonServerProcess, ServerProcess]) -> None:
    _, predictor = stack
    for _ in range(5):
        httpx.post(f"{predictor.http_url}/v2/models/simple/infer", json=simple_body(), timeout=10)

    text = ""
    deadline = time.monotonic() + 10  # the poller reads Triton once a second
    while time.monotonic() < deadline and triton_successes(text, "simple") < 5:
        time.sleep(0.2)
        text = httpx.get(f"{predictor.http_url}/metrics", timeout=10).text

    assert triton_successes(text, "simple") >= 5
    assert 'kubemind_triton_queue_duration_seconds_total{model="simple"}' in text
    assert 'kubemind_triton_pending_requests{model="simple"} 0.0' in text


def test_repository_config_batches_the_classifier(tmp_path: Path) -> None:
    config = render_config(shipped_model("efficientnet_lite0"))

    assert "dynamic_batching" in config
    assert "max_batch_size: 32" in config
    assert '{ name: "input" data_type: TYPE_UINT8 dims: [224, 224, 3] }' in config
    assert "dynamic_batching" not in render_config(shipped_model("simple"))
    repository = build_repository(tmp_path / "repo", ["simple"], onnx_dir=None)
    assert (repository / "simple" / "1" / "model.py").is_file()
