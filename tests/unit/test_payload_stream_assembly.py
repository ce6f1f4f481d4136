"""The response event of a decoupled ModelStreamInfer request: its responses as the one
ModelInferResponse they add up to."""

from __future__ import annotations

import numpy as np
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from kubemind.codecs import deserialize_bytes, serialize_bytes
from kubemind.payload_logger import assembled_grpc_stream


def _reply(texts: list[str], score: int, final: bool) -> pb.ModelInferResponse:
    reply = pb.ModelInferResponse(model_name="llm", model_version="2", id="r-1")
    reply.outputs.add(name="text_output", datatype="BYTES", shape=[len(texts)])
    reply.raw_output_contents.append(serialize_bytes(np.array([t.encode() for t in texts], dtype=object)))
    reply.outputs.add(name="tokens", datatype="INT32", shape=[1])
    reply.raw_output_contents.append(np.array([score], dtype=np.int32).tobytes())
    reply.parameters["triton_final_response"].bool_param = final
    return reply


def _texts(reply: pb.ModelInferResponse, index: int = 0) -> list[str]:
    output = reply.outputs[index]
    return [item.decode() for item in deserialize_bytes(output.name, reply.raw_output_contents[index], int(np.prod(output.shape)))]


def test_text_deltas_are_joined_element_by_element_and_the_rest_is_the_final_response() -> None:
    replies = [_reply(["Hel", "a"], 1, False), _reply(["lo", "b"], 2, False), _reply(["!", "c"], 3, True)]
    assembled = assembled_grpc_stream(replies)
    assert _texts(assembled) == ["Hello!", "abc"]
    assert np.frombuffer(assembled.raw_output_contents[1], dtype=np.int32).tolist() == [3]  # not a text: the final one's
    assert (assembled.model_name, assembled.model_version, assembled.id) == ("llm", "2", "r-1")
    assert assembled.parameters["triton_final_response"].bool_param
    assert not replies[-1].raw_output_contents[0].endswith(b"Hello!")  # the responses sent are left as they were


def test_one_response_is_itself_and_an_output_not_in_every_response_joins_those_that_have_it() -> None:
    only = _reply(["whole"], 1, True)
    assert assembled_grpc_stream([only]) is only
    first = pb.ModelInferResponse(model_name="llm", id="r-1")  # a response without the text output
    assembled = assembled_grpc_stream([_reply(["a "], 1, False), first, _reply(["b"], 2, True)])
    assert _texts(assembled) == ["a b"]
    reshaped = assembled_grpc_stream([_reply(["x", "y"], 1, False), _reply(["z"], 2, True)])
    assert _texts(reshaped) == ["z"]  # another shape is not part of the same output: the final one's
