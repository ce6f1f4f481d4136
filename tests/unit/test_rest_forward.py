"""REST passthrough: a stock tritonclient.http body becomes a ModelInferRequest carrying the same
bytes, and a ModelInferResponse becomes the REST reply tritonclient.http reads."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import tritonclient.http as triton_http
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from kubemind.codecs import parse_rest_request
from kubemind.errors import InvalidInput
from kubemind.protocol.rest_forward import grpc_request_from_rest, rest_reply_from_grpc

IMAGE = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
WORDS = np.array([b"coffee", b"", b"mug"], dtype=np.object_)


def stock_body(outputs: list[triton_http.InferRequestedOutput] | None = None, **options: object) -> tuple[bytes, int]:
    image = triton_http.InferInput("image", list(IMAGE.shape), "UINT8")
    image.set_data_from_numpy(IMAGE)
    words = triton_http.InferInput("words", list(WORDS.shape), "BYTES")
    words.set_data_from_numpy(WORDS)
    body, json_length = triton_http.InferenceServerClient.generate_request_body(
        [image, words], outputs=outputs, request_id="r-7", **options
    )
    return bytes(body), json_length


def test_the_tensors_go_on_as_the_client_sent_them() -> None:
    body, json_length = stock_body(priority=3)

    message = grpc_request_from_rest(parse_rest_request(body, json_length), "cv", "2")

    assert message is not None
    assert (message.model_name, message.model_version, message.id) == ("cv", "2", "r-7")
    assert [(t.name, t.datatype, list(t.shape)) for t in message.inputs] == [
        ("image", "UINT8", [2, 3, 4]),
        ("words", "BYTES", [3]),
    ]
    assert b"".join(message.raw_input_contents) == body[json_length:]
    assert message.raw_input_contents[0] == IMAGE.tobytes()
    # REST's own switches stay behind; Triton's own parameters go on.
    assert all("binary_data_size" not in t.parameters for t in message.inputs)
    assert "binary_data_output" not in message.parameters
    assert message.parameters["priority"].int64_param == 3


def test_requests_that_need_decoding_are_left_to_the_decoding_path() -> None:
    as_json = orjson.dumps({"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1]}]})
    body, json_length = stock_body()
    header = orjson.loads(body[:json_length])
    header["parameters"]["temperature"] = 0.5  # a float: InferParameter has no field for it here
    with_float = orjson.dumps(header)
    header = orjson.loads(body[:json_length])
    header["outputs"] = [{"name": "y", "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 4}}]
    into_shared_memory = orjson.dumps(header)

    assert grpc_request_from_rest(parse_rest_request(as_json, None), "m", None) is None
    for variant in (with_float, into_shared_memory):
        assert grpc_request_from_rest(parse_rest_request(variant + body[json_length:], len(variant)), "m", None) is None


def test_a_tensor_whose_bytes_do_not_fit_its_shape_is_refused_by_name() -> None:
    body, json_length = stock_body()
    header = orjson.loads(body[:json_length])
    header["inputs"][0]["shape"] = [2, 3, 5]  # 30 bytes' worth; the body has 24
    changed = orjson.dumps(header)

    with pytest.raises(InvalidInput, match=r"input 'image': data has 24 bytes but shape \[2, 3, 5\] needs 30"):
        grpc_request_from_rest(parse_rest_request(changed + body[json_length:], len(changed)), "m", None)


def triton_reply() -> bytes:
    reply = pb.ModelInferResponse(model_name="cv", model_version="2", id="r-7")
    scores = np.array([[0.25, 0.75]], dtype=np.float32)
    labels = np.array([b"cat", b"dog"], dtype=np.object_)
    reply.outputs.add(name="scores", datatype="FP32", shape=[1, 2])
    reply.raw_output_contents.append(scores.tobytes())
    reply.outputs.add(name="labels", datatype="BYTES", shape=[2])
    reply.raw_output_contents.append(b"".join(len(w).to_bytes(4, "little") + w for w in labels))
    return reply.SerializeToString()


def test_the_reply_reads_back_with_the_stock_client_binary_and_json_alike() -> None:
    outputs = [
        triton_http.InferRequestedOutput("labels", binary_data=False),
        triton_http.InferRequestedOutput("scores", binary_data=True),
    ]
    body, json_length = stock_body(outputs)
    parsed = parse_rest_request(body, json_length)

    payload, header_length = rest_reply_from_grpc(triton_reply(), parsed)

    result = triton_http.InferResult.from_response_body(payload, header_length=header_length)
    header = result.get_response()
    assert [o["name"] for o in header["outputs"]] == ["labels", "scores"]  # the client's order
    assert header["outputs"][0]["data"] == ["cat", "dog"]
    assert header["outputs"][1]["parameters"] == {"binary_data_size": 8}
    np.testing.assert_array_equal(result.as_numpy("scores"), [[0.25, 0.75]])
    assert (header["model_name"], header["model_version"], header["id"]) == ("cv", "2", "r-7")


def test_a_reply_with_no_binary_outputs_wanted_is_plain_json() -> None:
    as_json = orjson.dumps({"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1]}]})

    payload, header_length = rest_reply_from_grpc(triton_reply(), parse_rest_request(as_json, None))

    assert header_length is None
    assert orjson.loads(payload)["outputs"][0]["data"] == [0.25, 0.75]  # v2 JSON data is flat
