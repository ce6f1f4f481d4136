"""REST passthrough: a binary v2 REST infer forwarded as a gRPC ModelInferRequest, tensors as bytes.

A model that forwards gRPC inference (`KubemindModel.forwards_grpc`: the Triton predictor in front
of Triton) serves REST without decoding too: the binary body's tensor slices become the request's
`raw_input_contents`, and the reply's `raw_output_contents` become the REST reply's binary data.
Only the JSON header is parsed (`codecs.parse_rest_request`, the checks the decoding path makes);
the byte size of each fixed-size tensor is checked here, so the error names the tensor as the
decoding path's would. A request that carries JSON data or names a shared-memory region, or whose
parameters gRPC cannot carry, takes the decoding path instead (`grpc_request_from_rest` → None).
"""

from __future__ import annotations

from typing import Any

from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import to_grpc_parameters

from kubemind.codecs import (
    OUTPUT_BOOLEAN_PARAMETERS,
    PROTOCOL_BOOLEAN_PARAMETERS,
    RestInferBody,
    array_from_bytes,
    array_to_json,
    check_byte_size,
    element_count,
    grpc_parameters,
    rest_reply_body,
    wants_binary,
)
from kubemind.errors import InternalError
from kubemind.protocol.shared_memory import uses_shared_memory

# REST's own switches: they describe the REST body, so they are not sent on over gRPC.
_INPUT_REST_PARAMETERS = ("binary_data_size",)


def _carried(parameters: dict[str, Any] | None, rest_only: tuple[str, ...]) -> dict[str, Any] | None:
    """The parameters gRPC carries on (REST's own dropped); None when one has no gRPC form
    (a float, a list: InferParameter holds bool, int64 and string)."""
    kept = {key: value for key, value in (parameters or {}).items() if key not in rest_only}
    if any(not isinstance(value, str | bool | int) for value in kept.values()):
        return None
    return kept


def _copy_parameters(target: Any, parameters: dict[str, Any]) -> None:
    for key, value in to_grpc_parameters(parameters).items():
        target[key].CopyFrom(value)


def grpc_request_from_rest(
    parsed: RestInferBody, model_name: str, model_version: str | None
) -> pb.ModelInferRequest | None:
    """The ModelInferRequest carrying a binary REST request's tensors as they came, or None
    when the request must be decoded (JSON data, shared memory, parameters gRPC cannot hold)."""
    if not parsed.binary or any(tensor.binary is None for tensor in parsed.inputs):
        return None
    if any(uses_shared_memory(requested.parameters) for requested in parsed.request_outputs or ()):
        return None
    request_parameters = _carried(parsed.parameters, PROTOCOL_BOOLEAN_PARAMETERS)
    if request_parameters is None:
        return None
    message = pb.ModelInferRequest(model_name=model_name, model_version=model_version or "", id=parsed.id or "")
    _copy_parameters(message.parameters, request_parameters)
    for tensor in parsed.inputs:
        assert tensor.binary is not None
        element_count(tensor.name, tensor.shape)  # the shape's own checks, for BYTES too
        check_byte_size(tensor.name, tensor.datatype, tensor.shape, len(tensor.binary))
        input_parameters = _carried(tensor.parameters, _INPUT_REST_PARAMETERS)
        if input_parameters is None:
            return None
        added = message.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        _copy_parameters(added.parameters, input_parameters)
        message.raw_input_contents.append(bytes(tensor.binary))
    for requested in parsed.request_outputs or ():
        output_parameters = _carried(requested.parameters, OUTPUT_BOOLEAN_PARAMETERS)
        if output_parameters is None:
            return None
        output = message.outputs.add(name=requested.name)
        _copy_parameters(output.parameters, output_parameters)
    return message


def rest_reply_from_grpc(reply: bytes, parsed: RestInferBody) -> tuple[bytes, int | None]:
    """The REST reply to `parsed` from a serialised ModelInferResponse: binary data where the
    client asked for it (taken from raw_output_contents as it is), JSON data elsewhere."""
    message = pb.ModelInferResponse.FromString(reply)
    if len(message.raw_output_contents) != len(message.outputs):
        raise InternalError(
            f"the backend's reply has {len(message.outputs)} outputs but {len(message.raw_output_contents)} raw_output_contents"
        )
    outputs = list(zip(message.outputs, message.raw_output_contents, strict=True))
    if parsed.request_outputs:  # the client's order, as the decoding path answers
        order = {requested.name: index for index, requested in enumerate(parsed.request_outputs)}
        outputs.sort(key=lambda pair: order.get(pair[0].name, len(order)))
    outputs_json: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for output, raw in outputs:
        shape = list(output.shape)
        entry: dict[str, Any] = {"name": output.name, "datatype": output.datatype, "shape": shape}
        parameters = grpc_parameters(output.parameters) or {}
        parameters.pop("binary_data_size", None)
        if wants_binary(parsed, output.name):
            parameters["binary_data_size"] = len(raw)
            blobs.append(raw)
        else:
            array = array_from_bytes(output.name, output.datatype, shape, raw)
            entry["data"] = array_to_json(output.name, array, output.datatype)
        if parameters:
            entry["parameters"] = parameters
        outputs_json.append(entry)
    return rest_reply_body(
        message.model_name, message.model_version, outputs_json, blobs, parsed.id, grpc_parameters(message.parameters)
    )
