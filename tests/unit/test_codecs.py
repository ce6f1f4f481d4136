"""v2 tensors <-> numpy for every datatype and wire encoding, and the errors bad tensors get."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferResponse

from kubemind.codecs import (
    DATATYPES,
    NumpyOutput,
    decode_grpc_request,
    decode_rest_request,
    encode_grpc_response,
    encode_rest_response,
)
from kubemind.errors import InvalidInput

SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([[0, 7, 255], [1, 2, 3]], dtype=np.uint8),
    "UINT16": np.array([[0, 7, 65535], [1, 2, 3]], dtype=np.uint16),
    "UINT32": np.array([[0, 7, 2**32 - 1], [1, 2, 3]], dtype=np.uint32),
    "UINT64": np.array([[0, 7, 2**64 - 1], [1, 2, 3]], dtype=np.uint64),
    "INT8": np.array([[-128, 0, 127], [1, -2, 3]], dtype=np.int8),
    "INT16": np.array([[-32768, 0, 32767], [1, -2, 3]], dtype=np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1], [1, -2, 3]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1], [1, -2, 3]], dtype=np.int64),
    "FP16": np.array([[0.5, -1.25, 65504.0], [1, 2, 3]], dtype=np.float16),
    "FP32": np.array([[0.1, -1e30, 3.5], [1, 2, 3]], dtype=np.float32),
    "FP64": np.array([[0.1, -1e300, 3.5], [1, 2, 3]], dtype=np.float64),
    "BYTES": np.array([[b"a", b"", "héllo".encode()], [b"x", b"yy", b"zzz"]], dtype=np.object_),
    # BF16 has no numpy type: float32 in memory, 2 bytes each on the wire (values exact in bf16).
    "BF16": np.array([[0.5, -1.25, 3.0], [1, 2, 256]], dtype=np.float32),
}


def _json_data(array: np.ndarray, datatype: str) -> list:
    if datatype == "BYTES":
        return [item.decode() for item in array.reshape(-1)]
    return array.reshape(-1).tolist()


def _binary(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(item)) + item for item in array.reshape(-1))
    if datatype == "BF16":  # the upper half of each little-endian float32
        return b"".join(struct.pack("<f", value)[2:] for value in array.reshape(-1).tolist())
    return array.tobytes()


def _rest_body(datatype: str, array: np.ndarray, binary: bool) -> tuple[bytes, int | None]:
    tensor: dict = {"name": "x", "datatype": datatype, "shape": list(array.shape)}
    if binary:
        blob = _binary(array, datatype)
        tensor["parameters"] = {"binary_data_size": len(blob)}
        header = orjson.dumps({"inputs": [tensor]})
        return header + blob, len(header)
    tensor["data"] = _json_data(array, datatype)
    return orjson.dumps({"inputs": [tensor]}), None


def _response(array: np.ndarray, datatype: str) -> InferResponse:
    return InferResponse(response_id="r", model_name="m", infer_outputs=[NumpyOutput("y", array, datatype)])


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_rest_round_trip_every_datatype(datatype: str, binary: bool) -> None:
    array = SAMPLES[datatype]
    if datatype == "FP16" and not binary:
        array = array.astype(np.float16)
    body, json_length = _rest_body(datatype, array, binary)
    request = decode_rest_request(body, json_length, "m", None)
    decoded = request.inputs[0].as_numpy()
    assert decoded.shape == array.shape
    assert decoded.dtype == DATATYPES[datatype]
    assert decoded.tolist() == array.tolist()
    assert request.encoding == ("binary" if binary else "json")

    if binary:
        request.parameters = {"binary_data_output": True}
    reply, reply_json_length = encode_rest_response(_response(decoded, datatype), request, "1")
    header = orjson.loads(reply[:reply_json_length] if reply_json_length else reply)
    output = header["outputs"][0]
    assert output["shape"] == list(array.shape) and output["datatype"] == datatype
    if binary:
        assert reply[reply_json_length:] == _binary(array, datatype)
        assert output["parameters"]["binary_data_size"] == len(reply) - reply_json_length
    else:
        expected = _json_data(array, datatype)
        if datatype.startswith("FP"):
            assert np.allclose(output["data"], expected)
        else:
            assert output["data"] == expected


# FP16 and BF16 have no typed contents field: they travel raw only.
GRPC_CASES = [
    (datatype, raw) for datatype in sorted(DATATYPES) for raw in (False, True) if raw or datatype not in ("FP16", "BF16")
]


@pytest.mark.parametrize(("datatype", "raw"), GRPC_CASES)
def test_grpc_round_trip_answers_raw(datatype: str, raw: bool) -> None:
    array = SAMPLES[datatype]
    message = pb.ModelInferRequest(model_name="m", id="42")
    tensor = message.inputs.add(name="x", datatype=datatype, shape=list(array.shape))
    if raw:
        message.raw_input_contents.append(_binary(array, datatype))
    elif datatype == "BYTES":
        tensor.contents.bytes_contents.extend(array.reshape(-1).tolist())
    else:
        field = {"BOOL": "bool", "UINT64": "uint64", "INT64": "int64", "FP32": "fp32", "FP64": "fp64"}.get(
            datatype, "uint" if datatype.startswith("UINT") else "int"
        )
        getattr(tensor.contents, f"{field}_contents").extend(array.reshape(-1).tolist())
    request = decode_grpc_request(message)
    decoded = request.inputs[0].as_numpy()
    assert decoded.dtype == DATATYPES[datatype] and decoded.tolist() == array.tolist()

    reply = encode_grpc_response(_response(decoded, datatype), request, "1")
    assert reply.id == "42" and reply.model_version == "1"
    assert list(reply.outputs[0].shape) == list(array.shape)
    # raw out whatever came in, as Triton answers (tritonclient.grpc reads only raw outputs)
    assert reply.raw_output_contents[0] == _binary(array, datatype)
    assert not reply.outputs[0].HasField("contents")


def test_nested_json_data_is_accepted_row_major() -> None:
    body = orjson.dumps({"inputs": [{"name": "x", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]})
    assert decode_rest_request(body, None, "m", None).inputs[0].as_numpy().tolist() == [[1, 2], [3, 4]]


def test_nested_uint64_past_int64_max_is_exact() -> None:
    # numpy infers float64 for this mix; the decoder must fall back to the exact Python ints.
    data = [[2**64 - 1, 1], [2, 3]]
    body = orjson.dumps({"inputs": [{"name": "x", "datatype": "UINT64", "shape": [2, 2], "data": data}]})
    decoded = decode_rest_request(body, None, "m", None).inputs[0].as_numpy()
    assert decoded.dtype == np.uint64 and decoded.tolist() == data


def test_requested_outputs_select_and_order_the_reply() -> None:
    body = orjson.dumps(
        {
            "inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1]}],
            "outputs": [{"name": "b"}, {"name": "a", "parameters": {"binary_data": True}}],
        }
    )
    request = decode_rest_request(body, None, "m", None)
    response = InferResponse(
        response_id="",
        model_name="m",
        infer_outputs=[NumpyOutput("a", np.array([1], dtype=np.int32)), NumpyOutput("b", np.array([2], dtype=np.int32)), NumpyOutput("c", np.array([3], dtype=np.int32))],
    )
    reply, json_length = encode_rest_response(response, request, "1")
    assert json_length is not None
    header = orjson.loads(reply[:json_length])
    assert [o["name"] for o in header["outputs"]] == ["b", "a"]
    assert header["outputs"][0]["data"] == [2]
    assert reply[json_length:] == np.array([1], dtype=np.int32).tobytes()


def _tensor(**overrides: object) -> bytes:
    tensor = {"name": "INPUT0", "datatype": "INT32", "shape": [1, 2], "data": [1, 2]}
    tensor.update(overrides)
    return orjson.dumps({"inputs": [tensor]})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "request body must be a JSON object"),
        (orjson.dumps({"inputs": {}}), "inputs must be a JSON array"),
        (_tensor(datatype="INT33"), "input 'INPUT0': datatype: unknown datatype 'INT33'"),
        (_tensor(shape=[1, 3]), "input 'INPUT0': data has 2 elements but shape [1, 3] needs 3"),
        (_tensor(shape=[-1, 2]), "input 'INPUT0': shape [-1, 2] has a negative dimension"),
        (_tensor(shape=[2**62, 2**62]), "input 'INPUT0': data has 2 elements but shape"),
        (_tensor(shape=["1", 2]), "input 'INPUT0': shape must be a list of integers"),
        (_tensor(data=["a", "b"]), "input 'INPUT0': INT32 data must be numbers, got strings"),
        (_tensor(data=[1.5, 2]), "input 'INPUT0': INT32 data must be integers"),
        (_tensor(data=[2**31, 0]), "input 'INPUT0': values out of range for INT32"),
        (_tensor(data=[[1], [2, 3]], shape=[1, 3]), "input 'INPUT0'"),
        (_tensor(data=[True, False]), "input 'INPUT0': INT32 data must be numbers, got booleans"),
        (_tensor(datatype="BOOL", data=[1, 0]), "input 'INPUT0': BOOL data must be true/false values"),
        (_tensor(datatype="BYTES", data=["a", 1]), "input 'INPUT0': BYTES data must be strings"),
        (_tensor(data=None), "input 'INPUT0': data must be a JSON array"),
        (orjson.dumps({"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1]}]}), "input 'INPUT0': data is missing"),
        (orjson.dumps({"inputs": [{"datatype": "INT32", "shape": [1], "data": [1]}]}), "inputs[0].name must be a non-empty string"),
        (orjson.dumps({"inputs": [], "id": 5}), "id must be a string"),
    ],
)
def test_bad_json_tensors_are_rejected_naming_the_field(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_rest_request(body, None, "m", None)
    assert message in str(caught.value)


def test_json_nested_ten_thousand_deep_is_a_clean_error() -> None:
    body = b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": ' + b"[" * 10_000 + b"]" * 10_000 + b"}]}"
    with pytest.raises(InvalidInput, match="malformed JSON"):
        decode_rest_request(body, None, "m", None)


@pytest.mark.parametrize(
    ("blob", "size", "message"),
    [
        (b"\x00" * 7, 7, "input 'x': data has 7 bytes but shape [2] needs 8"),
        (b"\x00" * 8, 9, "binary_data_size 9 overruns the request body"),
    ],
)
def test_bad_binary_tensors_are_rejected(blob: bytes, size: int, message: str) -> None:
    header = orjson.dumps({"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "parameters": {"binary_data_size": size}}]})
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode_rest_request(header + blob, len(header), "m", None)


def test_unclaimed_trailing_binary_data_is_rejected() -> None:
    body, json_length = _rest_body("INT32", np.array([1, 2], dtype=np.int32), binary=True)
    with pytest.raises(InvalidInput, match="4 bytes of binary data no input claims"):
        decode_rest_request(body + b"\x00" * 4, json_length, "m", None)


def test_truncated_bytes_element_is_rejected() -> None:
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="text", datatype="BYTES", shape=[1])
    message.raw_input_contents.append(struct.pack("<I", 10) + b"abc")
    with pytest.raises(InvalidInput, match="input 'text': BYTES element at offset 0 overruns the data"):
        decode_grpc_request(message)


def test_grpc_raw_count_mismatch_is_rejected() -> None:
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="a", datatype="INT32", shape=[1])
    message.inputs.add(name="b", datatype="INT32", shape=[1])
    message.raw_input_contents.append(b"\x00" * 4)
    with pytest.raises(InvalidInput, match="raw_input_contents has 1 entries but the request has 2 inputs"):
        decode_grpc_request(message)


def test_non_utf8_bytes_output_requires_binary() -> None:
    request = decode_rest_request(*_rest_body("INT32", np.array([1], dtype=np.int32), binary=False), "m", None)
    response = _response(np.array([b"\xff\xfe"], dtype=np.object_), "BYTES")
    with pytest.raises(InvalidInput, match="output 'y' holds non-UTF-8 bytes"):
        encode_rest_response(response, request, "1")


def test_triton_double_and_uint64_parameters_survive_kserve_proto() -> None:
    # tritonclient sends floats as double_param (field 4) and big ints as uint64_param (field 5),
    # which KServe's InferParameter does not declare: they must not be dropped.
    message = pb.ModelInferRequest(model_name="m")
    message.parameters["temperature"].CopyFrom(pb.InferParameter.FromString(b"\x21" + struct.pack("<d", 0.25)))
    message.parameters["seed"].CopyFrom(pb.InferParameter.FromString(b"\x28\x80\x80\x80\x80\x10"))
    message.parameters["max_tokens"].int64_param = 8
    wire = pb.ModelInferRequest.FromString(message.SerializeToString())
    wire.inputs.add(name="x", datatype="INT32", shape=[1]).contents.int_contents.append(1)
    assert decode_grpc_request(wire).parameters == {"temperature": 0.25, "seed": 2**32, "max_tokens": 8}
