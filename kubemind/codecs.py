"""Open Inference Protocol tensors <-> numpy, for every wire encoding.

REST: JSON data (flat or nested), and the binary tensor data extension in and out
(`Inference-Header-Content-Length`). gRPC: typed `contents` and `raw_input_contents` /
`raw_output_contents`. Decoding validates everything a client can get wrong — datatype, shape,
data size, JSON structure — and raises `InvalidInput` naming the tensor or field; the model only
ever sees well-formed numpy arrays. Replies mirror the request's encoding: a gRPC request with
raw inputs gets raw outputs (what `tritonclient.grpc` expects); a REST request gets binary
outputs where it asked for them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from google.protobuf import unknown_fields
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
    to_grpc_parameters,
)

from kubemind.datatypes import DATATYPE_TABLE, bf16_from_bytes, bf16_to_bytes, v2_name_of
from kubemind.errors import InvalidInput
from kubemind.protocol.shared_memory import (
    BYTE_SIZE,
    REGION,
    SharedMemoryRegistry,
    uses_shared_memory,
)

# v2 datatype -> the numpy dtype kubemind holds it in (from the one table in kubemind.datatypes).
DATATYPES: dict[str, np.dtype] = {entry.name: entry.numpy for entry in DATATYPE_TABLE}

# gRPC InferTensorContents field per datatype (FP16 has none: it travels raw only).
_GRPC_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
# The wider numpy type the contents field holds before narrowing to the datatype.
_GRPC_CONTENTS_DTYPE = {
    "bool_contents": np.bool_,
    "uint_contents": np.uint32,
    "uint64_contents": np.uint64,
    "int_contents": np.int32,
    "int64_contents": np.int64,
    "fp32_contents": np.float32,
    "fp64_contents": np.float64,
}

JSON_HEADER_LENGTH = "inference-header-content-length"

# numpy's own limit on dimensions (NPY_MAXDIMS): a deeper shape cannot be held at all.
MAX_DIMS = 64
# A zero-element tensor holds no data to compare its shape against; its other dimensions still
# have to describe an array numpy can represent (their product must fit its index type).
MAX_NONZERO_ELEMENTS = 2**48
# Tensor names are echoed in error messages, which travel in gRPC trailers (8 kB by default):
# a 100 kB name would turn every error into the client's RESOURCE_EXHAUSTED.
MAX_NAME_LENGTH = 256
# Parameters the protocol itself defines: they steer the transport, never the model.
PROTOCOL_BOOLEAN_PARAMETERS = ("binary_data_output",)
OUTPUT_BOOLEAN_PARAMETERS = ("binary_data",)
# Request-level parameters of the protocol and Triton's extensions (tritonclient sends some of
# them unasked): a model that turns request parameters into its own options must not see them.
PROTOCOL_PARAMETERS = frozenset(
    {
        "binary_data_output",
        "sequence_id",
        "sequence_start",
        "sequence_end",
        "priority",
        "timeout",
        "headers",
        "triton_enable_empty_final_response",
    }
)


def model_parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """A request's parameters without the protocol's own (what a model may treat as options)."""
    return {key: value for key, value in (parameters or {}).items() if key not in PROTOCOL_PARAMETERS}


# -- numpy <-> datatype ---------------------------------------------------------------------------
def numpy_dtype(datatype: str, field: str = "datatype") -> np.dtype:
    try:
        return DATATYPES[datatype]
    except (KeyError, TypeError):
        raise InvalidInput(
            f"{field}: unknown datatype {datatype!r} (expected one of {', '.join(DATATYPES)})"
        ) from None


def datatype_of(array: np.ndarray) -> str:
    """The v2 datatype of a numpy array (str/bytes arrays are BYTES)."""
    name = v2_name_of(array.dtype)
    if name is None:
        raise InvalidInput(f"numpy dtype {array.dtype} has no v2 datatype")
    return name


class NumpyInput(InferInput):
    """An InferInput whose data was decoded and validated into a numpy array."""

    def __init__(self, name: str, array: np.ndarray, datatype: str, parameters: dict | None = None):
        super().__init__(name, list(array.shape), datatype, data=array, parameters=parameters)
        self.array = array

    def as_numpy(self) -> np.ndarray:
        return self.array


class NumpyOutput(InferOutput):
    """An InferOutput holding a numpy array; the transport encodes it as the client asked."""

    def __init__(self, name: str, array: np.ndarray, datatype: str | None = None, parameters: dict | None = None):
        datatype = datatype or datatype_of(array)
        super().__init__(name, list(array.shape), datatype, data=array, parameters=parameters)
        self.array = array

    def as_numpy(self) -> np.ndarray:
        return self.array


class DecodedRequest(InferRequest):
    """An InferRequest that remembers how it arrived, so the reply can mirror it."""

    encoding: str  # "json" | "binary" (REST) | "contents" | "raw" (gRPC)

    def __init__(self, *args: Any, encoding: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.encoding = encoding


# -- shapes and element counts --------------------------------------------------------------------
def element_count(name: str, shape: Sequence[Any]) -> int:
    """Elements a shape holds; rejects non-integer and negative dimensions.

    Python ints never overflow, so a shape whose product exceeds any real buffer simply fails the
    size comparison against the data that came with it — nothing is ever allocated from a shape.
    """
    if len(shape) > MAX_DIMS:
        raise InvalidInput(f"input '{name}': shape has {len(shape)} dimensions, more than the {MAX_DIMS} allowed")
    count, nonzero = 1, 1
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer):
            raise InvalidInput(f"input '{name}': shape must be a list of integers, got {_clip(repr(list(shape)))}")
        if dim < 0:
            raise InvalidInput(f"input '{name}': shape {list(shape)} has a negative dimension")
        count *= int(dim)
        nonzero *= int(dim) or 1
    if count == 0 and nonzero > MAX_NONZERO_ELEMENTS:
        raise InvalidInput(f"input '{name}': shape {list(shape)} is larger than any tensor this server can hold")
    return count


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_name(name: str, where: str) -> None:
    """Names are non-empty and at most MAX_NAME_LENGTH characters (`where` names the field)."""
    _expect(isinstance(name, str) and name != "", f"{where} must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"{where} is {len(name)} characters long, more than the {MAX_NAME_LENGTH} allowed ({_clip(name, 40)!r})"
        )


def check_protocol_parameters(request: InferRequest | RestInferBody) -> None:
    """The protocol's own switches (binary_data_output, an output's binary_data) must be booleans:
    a string "false" must not silently count as true."""
    for key in PROTOCOL_BOOLEAN_PARAMETERS:
        value = (request.parameters or {}).get(key)
        if value is not None and not isinstance(value, bool):
            raise InvalidInput(f"parameters.{key}: must be a boolean, got {_clip(repr(value), 40)}", param=key)
    for requested in request.request_outputs or ():
        for key in OUTPUT_BOOLEAN_PARAMETERS:
            value = (requested.parameters or {}).get(key)
            if value is not None and not isinstance(value, bool):
                raise InvalidInput(
                    f"output '{requested.name}': parameters.{key} must be a boolean, got {_clip(repr(value), 40)}",
                    param=key,
                )


def _size_mismatch(name: str, got: int, shape: Sequence[int], count: int, unit: str = "elements") -> InvalidInput:
    return InvalidInput(
        f"input '{name}': data has {got} {unit} but shape {list(shape)} needs {count}"
    )


# -- JSON data ------------------------------------------------------------------------------------
def _narrow(name: str, values: np.ndarray, datatype: str) -> np.ndarray:
    """Cast an inferred numeric array to `datatype`, refusing values it cannot represent."""
    target = DATATYPES[datatype]
    kind = values.dtype.kind
    if values.size == 0:
        return values.astype(target)
    if datatype == "BOOL":
        if kind != "b":
            raise InvalidInput(f"input '{name}': BOOL data must be true/false values")
        return values
    if kind in "US":
        raise InvalidInput(f"input '{name}': {datatype} data must be numbers, got strings")
    if kind == "b":
        raise InvalidInput(f"input '{name}': {datatype} data must be numbers, got booleans")
    if target.kind in "iu":
        if kind not in "iu":
            return _integers_checked_one_by_one(name, values, datatype)
        info = np.iinfo(target)
        if values.min() < info.min or values.max() > info.max:
            raise InvalidInput(f"input '{name}': values out of range for {datatype}")
        return values.astype(target, copy=False)
    if kind not in "iuf":
        raise InvalidInput(f"input '{name}': {datatype} data must be numbers")
    return values.astype(target, copy=False)


def _integers_checked_one_by_one(name: str, values: np.ndarray, datatype: str) -> np.ndarray:
    """Slow path for integer data numpy could not infer as integers: values past INT64_MAX mixed
    with smaller ones (numpy falls back to float64 or object), or genuinely non-integer data."""
    info = np.iinfo(DATATYPES[datatype])
    items = values.tolist()
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise InvalidInput(f"input '{name}': {datatype} data must be integers")
        if not info.min <= item <= info.max:
            raise InvalidInput(f"input '{name}': values out of range for {datatype}")
    return np.array(items, dtype=DATATYPES[datatype])


def _flatten_strings(name: str, data: list) -> list[bytes]:
    """BYTES JSON data (flat or nested lists of strings) -> flat list of UTF-8 bytes."""
    flat: list[bytes] = []
    stack: list[Iterable[Any]] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, str):
                flat.append(item.encode("utf-8"))
            elif isinstance(item, list):
                stack.append(iter(item))
                break
            else:
                raise InvalidInput(f"input '{name}': BYTES data must be strings, got {type(item).__name__}")
        else:
            stack.pop()
    return flat


def array_from_json(name: str, datatype: str, shape: Sequence[int], data: Any) -> np.ndarray:
    """Decode one tensor's JSON `data` (flat or nested, row-major) into an array of `shape`."""
    count = element_count(name, shape)
    if not isinstance(data, list):
        raise InvalidInput(f"input '{name}': data must be a JSON array")
    if datatype == "BYTES":
        flat = _flatten_strings(name, data)
        if len(flat) != count:
            raise _size_mismatch(name, len(flat), shape, count)
        array = np.empty(count, dtype=np.object_)
        array[:] = flat
        return array.reshape(shape)
    try:
        values = np.asarray(data)
        if values.dtype.kind == "f" and DATATYPES[datatype].kind in "iu":
            # numpy promotes a mix of int64 and uint64-only values to float64, losing precision:
            # look at the original Python values instead.
            values = np.asarray(data, dtype=np.object_)
    except (ValueError, OverflowError):
        raise InvalidInput(f"input '{name}': nested data is ragged or not numeric") from None
    if values.size != count:
        raise _size_mismatch(name, int(values.size), shape, count)
    return _narrow(name, values.reshape(-1), datatype).reshape(shape)


def array_to_json(name: str, array: np.ndarray, datatype: str) -> Any:
    """Flat row-major JSON-serialisable data for an output (numpy arrays go to orjson as is)."""
    flat = array.reshape(-1)
    if datatype != "BYTES":
        return np.ascontiguousarray(flat)
    try:
        return [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in flat]
    except UnicodeDecodeError:
        raise InvalidInput(
            f"output '{name}' holds non-UTF-8 bytes: request it with binary_data=true"
        ) from None


# -- binary data (REST binary extension and gRPC raw contents) ------------------------------------
def serialize_bytes(array: np.ndarray) -> bytes:
    """BYTES elements as 4-byte little-endian lengths followed by the bytes, row-major."""
    parts = []
    for item in array.reshape(-1):
        value = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(value)))
        parts.append(value)
    return b"".join(parts)


def deserialize_bytes(name: str, buffer: bytes | memoryview, count: int) -> np.ndarray:
    view = memoryview(buffer)
    items = []
    offset = 0
    while offset < len(view):
        if offset + 4 > len(view):
            raise InvalidInput(f"input '{name}': truncated BYTES element length at offset {offset}")
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > len(view):
            raise InvalidInput(f"input '{name}': BYTES element at offset {offset - 4} overruns the data")
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if len(items) != count:
        raise InvalidInput(f"input '{name}': data has {len(items)} BYTES elements but the shape needs {count}")
    array = np.empty(count, dtype=np.object_)
    array[:] = items
    return array


def array_from_bytes(name: str, datatype: str, shape: Sequence[int], buffer: bytes | memoryview) -> np.ndarray:
    if datatype == "BYTES":
        return deserialize_bytes(name, buffer, element_count(name, shape)).reshape(shape)
    check_byte_size(name, datatype, shape, len(buffer))
    if datatype == "BF16":
        return bf16_from_bytes(buffer).reshape(shape)
    return np.frombuffer(buffer, dtype=DATATYPES[datatype]).reshape(shape)


def check_byte_size(name: str, datatype: str, shape: Sequence[int], size: int) -> None:
    """A fixed-size tensor's data must be exactly its shape's bytes (BYTES has no fixed size)."""
    if datatype == "BYTES":
        return
    expected = element_count(name, shape) * (2 if datatype == "BF16" else DATATYPES[datatype].itemsize)
    if size != expected:
        raise _size_mismatch(name, size, shape, expected, unit="bytes")


def array_to_bytes(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        return serialize_bytes(array)
    if datatype == "BF16":
        return bf16_to_bytes(array)
    return np.ascontiguousarray(array, dtype=DATATYPES[datatype]).tobytes()


# -- REST -----------------------------------------------------------------------------------------
def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidInput(message)


def _parameters(value: Any, where: str) -> dict | None:
    if value is None:
        return None
    _expect(isinstance(value, dict), f"{where}: parameters must be a JSON object")
    return value


def _requested_outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    _expect(isinstance(value, list), "outputs must be a JSON array")
    requested = []
    for index, entry in enumerate(value):
        _expect(isinstance(entry, dict), f"outputs[{index}] must be a JSON object")
        name = entry.get("name")
        check_name(name, f"outputs[{index}].name")
        requested.append(RequestedOutput(name, _parameters(entry.get("parameters"), f"output '{name}'")))
    return requested


def parse_json_body(body: bytes | memoryview) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON request body: {exc}") from None


@dataclass
class RestTensor:
    """One input of a REST infer body as the header describes it, its data not yet decoded:
    `binary` is its slice of a binary body, `data` its JSON data, `shared_memory` its region's
    parameters (exactly one of the three)."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict | None
    binary: memoryview | None = None
    data: Any = None
    shared_memory: bool = False


@dataclass
class RestInferBody:
    """A v2 REST infer body checked for structure (names, datatypes, shapes, parameters, the
    binary layout), with no tensor data decoded: the decoding path and the passthrough path
    (kubemind.protocol.rest_forward) both start here."""

    id: str | None
    inputs: list[RestTensor]
    parameters: dict | None
    request_outputs: list[RequestedOutput] | None
    binary: bool


def parse_rest_request(body: bytes, json_length: int | None) -> RestInferBody:
    """Parse a v2 REST infer body (JSON, or JSON + binary tensors when json_length is given)."""
    if json_length is not None:
        _expect(0 <= json_length <= len(body), f"{JSON_HEADER_LENGTH} {json_length} is outside the body ({len(body)} bytes)")
    view = memoryview(body)
    header = parse_json_body(view[:json_length] if json_length is not None else view)
    _expect(isinstance(header, dict), "request body must be a JSON object")
    raw_inputs = header.get("inputs")
    _expect(isinstance(raw_inputs, list), "inputs must be a JSON array of tensors")
    request_id = header.get("id")
    _expect(request_id is None or isinstance(request_id, str), "id must be a string")
    offset = json_length if json_length is not None else len(body)
    used_binary = False
    inputs: list[RestTensor] = []
    for index, entry in enumerate(raw_inputs):
        _expect(isinstance(entry, dict), f"inputs[{index}] must be a JSON object")
        name = entry.get("name")
        check_name(name, f"inputs[{index}].name")
        datatype = entry.get("datatype")
        numpy_dtype(datatype, field=f"input '{name}': datatype")
        shape = entry.get("shape")
        _expect(isinstance(shape, list), f"input '{name}': shape must be a list of integers")
        parameters = _parameters(entry.get("parameters"), f"input '{name}'")
        binary_size = parameters.get("binary_data_size") if parameters else None
        tensor = RestTensor(name, datatype, shape, parameters)
        if uses_shared_memory(parameters):
            tensor.shared_memory = True
        elif binary_size is not None:
            _expect(
                isinstance(binary_size, int) and not isinstance(binary_size, bool) and binary_size >= 0,
                f"input '{name}': binary_data_size must be a non-negative integer",
            )
            _expect(json_length is not None, f"input '{name}': binary_data_size given but the request has no {JSON_HEADER_LENGTH} header")
            _expect(offset + binary_size <= len(body), f"input '{name}': binary_data_size {binary_size} overruns the request body")
            tensor.binary = view[offset : offset + binary_size]
            offset += binary_size
            used_binary = True
        else:
            _expect("data" in entry, f"input '{name}': data is missing")
            tensor.data = entry["data"]
        inputs.append(tensor)
    _expect(offset == len(body), f"request body has {len(body) - offset} bytes of binary data no input claims")
    parsed = RestInferBody(
        id=request_id,
        inputs=inputs,
        parameters=_parameters(header.get("parameters"), "request"),
        request_outputs=_requested_outputs(header.get("outputs")),
        binary=used_binary,
    )
    check_protocol_parameters(parsed)
    return parsed


def decode_rest_request(
    body: bytes,
    json_length: int | None,
    model_name: str,
    model_version: str | None,
    shared_memory: SharedMemoryRegistry | None = None,
    parsed: RestInferBody | None = None,
) -> DecodedRequest:
    """Decode a v2 REST infer body into numpy (inputs may name a registered shared-memory region
    instead of carrying data); `parsed` is the body's parse_rest_request() when it was parsed already."""
    if parsed is None:
        parsed = parse_rest_request(body, json_length)
    inputs: list[InferInput] = []
    for tensor in parsed.inputs:
        name, datatype, shape = tensor.name, tensor.datatype, tensor.shape
        if tensor.shared_memory:
            array = array_from_bytes(name, datatype, shape, _shared(shared_memory).read(name, tensor.parameters or {}))
        elif tensor.binary is not None:
            array = array_from_bytes(name, datatype, shape, tensor.binary)
        else:
            array = array_from_json(name, datatype, shape, tensor.data)
        inputs.append(NumpyInput(name, array, datatype, tensor.parameters))
    return DecodedRequest(
        model_name=model_name,
        infer_inputs=inputs,
        request_id=parsed.id,
        parameters=parsed.parameters,
        request_outputs=parsed.request_outputs,
        model_version=model_version,
        encoding="binary" if parsed.binary else "json",
    )


def _selected_outputs(response: InferResponse, request: InferRequest) -> list[InferOutput]:
    """The outputs the client asked for, in its order (all of them when it asked for none)."""
    if not request.request_outputs:
        return list(response.outputs)
    by_name = {output.name: output for output in response.outputs}
    selected = []
    for requested in request.request_outputs:
        if requested.name not in by_name:
            raise InvalidInput(f"requested output '{requested.name}' is not produced by model '{request.model_name}'")
        selected.append(by_name[requested.name])
    return selected


def _shared(shared_memory: SharedMemoryRegistry | None) -> SharedMemoryRegistry:
    if shared_memory is None:
        raise InvalidInput("this endpoint does not take shared-memory tensors")
    return shared_memory


def _output_region(request: InferRequest, name: str) -> dict[str, Any] | None:
    """The shared-memory parameters of a requested output, when the client gave a region."""
    for requested in request.request_outputs or ():
        if requested.name == name and uses_shared_memory(requested.parameters):
            return dict(requested.parameters)
    return None


def _write_shared(
    shared_memory: SharedMemoryRegistry | None, name: str, region: dict[str, Any], array: np.ndarray, datatype: str
) -> dict[str, Any]:
    written = _shared(shared_memory).write(name, region, array_to_bytes(array, datatype))
    return {REGION: region[REGION], BYTE_SIZE: written}


def wants_binary(request: InferRequest | RestInferBody, name: str) -> bool:
    request_default = bool((request.parameters or {}).get("binary_data_output", False))
    for requested in request.request_outputs or ():
        if requested.name == name and requested.parameters and "binary_data" in requested.parameters:
            return bool(requested.parameters["binary_data"])
    return request_default


def output_array(output: InferOutput) -> np.ndarray:
    array = output.as_numpy()
    if output.datatype != "BYTES" and array.dtype != DATATYPES.get(output.datatype):
        array = array.astype(numpy_dtype(output.datatype, field=f"output '{output.name}'"))
    return array


def encode_rest_response(
    response: InferResponse,
    request: InferRequest,
    model_version: str,
    shared_memory: SharedMemoryRegistry | None = None,
) -> tuple[bytes, int | None]:
    """Encode a v2 REST reply; returns (body, json_length) — json_length is None for pure JSON."""
    outputs_json = []
    blobs: list[bytes] = []
    for output in _selected_outputs(response, request):
        array = output_array(output)
        entry: dict[str, Any] = {"name": output.name, "datatype": output.datatype, "shape": list(array.shape)}
        parameters = dict(output.parameters) if isinstance(output.parameters, dict) else {}
        parameters.pop("binary_data_size", None)
        region = _output_region(request, output.name)
        if region is not None:
            parameters.update(_write_shared(shared_memory, output.name, region, array, output.datatype))
        elif wants_binary(request, output.name):
            blob = array_to_bytes(array, output.datatype)
            parameters["binary_data_size"] = len(blob)
            blobs.append(blob)
        else:
            entry["data"] = array_to_json(output.name, array, output.datatype)
        if parameters:
            entry["parameters"] = parameters
        outputs_json.append(entry)
    return rest_reply_body(
        response.model_name or request.model_name,
        response.model_version or model_version,
        outputs_json,
        blobs,
        request.id,
        dict(response.parameters) if response.parameters else None,
    )


def rest_reply_body(
    model_name: str,
    model_version: str,
    outputs_json: list[dict[str, Any]],
    blobs: Sequence[bytes],
    request_id: str | None,
    parameters: dict[str, Any] | None,
) -> tuple[bytes, int | None]:
    """A v2 REST reply from its output entries and their binary data, in order; returns (body,
    json_length), json_length None for pure JSON."""
    body: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": outputs_json}
    if request_id:
        body["id"] = request_id
    if parameters:
        body["parameters"] = parameters
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def binary_rest_request(inputs: Sequence[tuple[str, str, np.ndarray]]) -> tuple[bytes, int]:
    """A v2 REST infer body with every input's data binary (the binary-tensor extension), from
    (name, datatype, array) triples; returns (body, json_length)."""
    entries, blobs = [], []
    for name, datatype, array in inputs:
        blob = array_to_bytes(array, datatype)
        entries.append({"name": name, "datatype": datatype, "shape": list(array.shape), "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    header = orjson.dumps({"inputs": entries})
    return b"".join([header, *blobs]), len(header)


# -- gRPC -----------------------------------------------------------------------------------------
def _array_from_contents(tensor: pb.ModelInferRequest.InferInputTensor) -> np.ndarray:
    name, datatype = tensor.name, tensor.datatype
    shape = list(tensor.shape)
    count = element_count(name, shape)
    field = _GRPC_CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(f"input '{name}': {datatype} data must be sent in raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise _size_mismatch(name, len(values), shape, count)
    if datatype == "BYTES":
        array = np.empty(count, dtype=np.object_)
        array[:] = list(values)
        return array.reshape(shape)
    wide: np.ndarray = np.array(values, dtype=_GRPC_CONTENTS_DTYPE[field])
    return _narrow(name, wide, datatype).reshape(shape) if datatype != "BOOL" else wide.reshape(shape)


# Triton's InferParameter has double_param (4) and uint64_param (5); KServe's proto stops at
# string_param (3), so tritonclient's float and uint64 parameters arrive as unknown fields.
_DOUBLE_PARAM, _UINT64_PARAM = 4, 5


def grpc_parameters(parameters: Any) -> dict[str, Any] | None:
    """A gRPC parameters map as Python values, Triton's double and uint64 parameters included."""
    if not parameters:
        return None
    plain: dict[str, Any] = {}
    for key, value in parameters.items():
        which = value.WhichOneof("parameter_choice")
        if which is not None:
            plain[key] = getattr(value, which)
            continue
        for field in unknown_fields.UnknownFieldSet(value):
            if field.field_number == _DOUBLE_PARAM and field.wire_type == 1:
                plain[key] = struct.unpack("<d", struct.pack("<Q", field.data))[0]
            elif field.field_number == _UINT64_PARAM and field.wire_type == 0:
                plain[key] = int(field.data)
    return plain


def decode_grpc_request(message: pb.ModelInferRequest, shared_memory: SharedMemoryRegistry | None = None) -> DecodedRequest:
    raw = message.raw_input_contents
    all_parameters = [grpc_parameters(t.parameters) for t in message.inputs]
    # Inputs in shared memory carry no raw entry: raw_input_contents holds the others, in order.
    carried = sum(1 for p in all_parameters if not uses_shared_memory(p))
    if raw and len(raw) != carried:
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries but the request has {carried} inputs that carry data"
        )
    inputs: list[InferInput] = []
    raw_index = 0
    for index, tensor in enumerate(message.inputs):
        check_name(tensor.name, f"inputs[{index}].name")
        numpy_dtype(tensor.datatype, field=f"input '{tensor.name}': datatype")
        parameters = all_parameters[index]
        if uses_shared_memory(parameters):
            data = _shared(shared_memory).read(tensor.name, parameters or {})
            array = array_from_bytes(tensor.name, tensor.datatype, list(tensor.shape), data)
        elif raw:
            if tensor.HasField("contents"):
                raise InvalidInput(f"input '{tensor.name}': contents must be empty when raw_input_contents is used")
            array = array_from_bytes(tensor.name, tensor.datatype, list(tensor.shape), raw[raw_index])
            raw_index += 1
        else:
            array = _array_from_contents(tensor)
        inputs.append(NumpyInput(tensor.name, array, tensor.datatype, parameters))
    for index, output in enumerate(message.outputs):
        check_name(output.name, f"outputs[{index}].name")
    requested = [
        RequestedOutput(o.name, grpc_parameters(o.parameters))
        for o in message.outputs
    ]
    decoded = DecodedRequest(
        model_name=message.model_name,
        infer_inputs=inputs,
        request_id=message.id,
        parameters=grpc_parameters(message.parameters),
        request_outputs=requested or None,
        model_version=message.model_version or None,
        from_grpc=True,
        encoding="raw" if raw else "contents",
    )
    check_protocol_parameters(decoded)
    return decoded


def encode_grpc_response(
    response: InferResponse,
    request: InferRequest,
    model_version: str,
    shared_memory: SharedMemoryRegistry | None = None,
) -> pb.ModelInferResponse:
    """Encode a v2 gRPC reply, always in raw_output_contents whatever the request's encoding:
    Triton does so, and tritonclient reads outputs only from there."""
    selected = _selected_outputs(response, request)
    arrays = [output_array(output) for output in selected]
    reply = pb.ModelInferResponse(
        model_name=response.model_name or request.model_name,
        model_version=response.model_version or model_version,
        id=request.id or "",
    )
    if response.parameters:
        for key, value in to_grpc_parameters(dict(response.parameters)).items():
            reply.parameters[key].CopyFrom(value)
    for output, array in zip(selected, arrays, strict=True):
        tensor = reply.outputs.add(name=output.name, datatype=output.datatype, shape=list(array.shape))
        region = _output_region(request, output.name)
        if region is None:
            reply.raw_output_contents.append(array_to_bytes(array, output.datatype))
            continue
        for key, value in to_grpc_parameters(_write_shared(shared_memory, output.name, region, array, output.datatype)).items():
            tensor.parameters[key].CopyFrom(value)
        # An empty entry keeps raw_output_contents aligned with outputs (tritonclient indexes it).
        reply.raw_output_contents.append(b"")
    return reply
