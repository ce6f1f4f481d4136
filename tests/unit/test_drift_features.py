"""The drift service measures one generation the same whichever transport carried it: a
reference profile built from REST traffic lines up with gRPC traffic."""

from __future__ import annotations

import orjson
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from kubemind.drift.service import rows_of_event
from kubemind.payload_logger import (
    GRPC_REQUEST_CONTENT_TYPE,
    GRPC_RESPONSE_CONTENT_TYPE,
    REQUEST_TYPE,
    RESPONSE_TYPE,
)
from kubemind.protocol.sse import encode_event

PROMPT = "tell me a story about a cat"
TEXT = "once upon a time there was a cat"


def _bytes_tensor(text: str) -> bytes:
    encoded = text.encode()
    return len(encoded).to_bytes(4, "little") + encoded


def _rest(event_type: str, body: object, content_type: str = "application/json") -> list[dict[str, float | str]]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return rows_of_event({"ce-type": event_type, "content-type": content_type}, raw)


def _grpc_request() -> list[dict[str, float | str]]:
    request = pb.ModelInferRequest(model_name="llm", id="1")
    request.inputs.add(name="text_input", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(_bytes_tensor(PROMPT))
    return rows_of_event({"ce-type": REQUEST_TYPE, "content-type": GRPC_REQUEST_CONTENT_TYPE}, request.SerializeToString())


def _grpc_response() -> list[dict[str, float | str]]:
    reply = pb.ModelInferResponse(model_name="llm", model_version="1", id="1")
    reply.outputs.add(name="text_output", datatype="BYTES", shape=[1])
    reply.raw_output_contents.append(_bytes_tensor(TEXT))
    return rows_of_event({"ce-type": RESPONSE_TYPE, "content-type": GRPC_RESPONSE_CONTENT_TYPE}, reply.SerializeToString())


def test_a_generation_has_the_same_features_over_grpc_as_over_rest() -> None:
    prompt = [{"prompt_tokens": float(len(PROMPT.split()))}]
    completion = [{"completion_tokens": float(len(TEXT.split()))}]
    # REST: the OIP generate route, its stream, OpenAI, and a v2 infer with the tensors as JSON.
    assert _rest(REQUEST_TYPE, {"text_input": PROMPT}) == prompt
    assert _rest(RESPONSE_TYPE, {"model_name": "llm", "text_output": TEXT}) == completion
    stream = b"".join(encode_event({"text_output": word + " "}) for word in TEXT.split())
    assert _rest(RESPONSE_TYPE, stream, "text/event-stream") == completion
    assert _rest(REQUEST_TYPE, {"model": "llm", "prompt": PROMPT}) == prompt
    v2 = {"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1], "data": [PROMPT]}]}
    assert _rest(REQUEST_TYPE, v2) == prompt
    v2_reply = {"outputs": [{"name": "text_output", "datatype": "BYTES", "shape": [1], "data": [TEXT]}]}
    assert _rest(RESPONSE_TYPE, v2_reply) == completion
    # gRPC: the ModelInferRequest / ModelInferResponse the payload logger sends.
    assert _grpc_request() == prompt
    assert _grpc_response() == completion


def test_a_class_label_output_is_still_a_category() -> None:
    reply = {"outputs": [{"name": "label", "datatype": "BYTES", "shape": [2], "data": ["cat", "dog"]}]}
    assert _rest(RESPONSE_TYPE, reply) == [{"prediction:label": "cat"}, {"prediction:label": "dog"}]
