"""Triton's example models `simple_string` and `simple_identity`, and the server name setting
(Triton's own example clients call those models and check that the server is named "triton")."""

from __future__ import annotations

import numpy as np
import pytest
from kserve.model_repository import ModelRepository
from kserve.protocol.infer_type import InferInput, InferRequest

from kubemind.errors import InvalidInput
from kubemind.protocol.service import InferenceService
from kubemind_predictors.simple.model import SimpleIdentityModel, SimpleStringModel


def strings(values: list[object]) -> np.ndarray:
    return np.array([str(v).encode() for v in values], dtype=np.object_).reshape(1, -1)


def request(model: str, **tensors: np.ndarray) -> InferRequest:
    inputs = []
    for name, array in tensors.items():
        tensor = InferInput(name, list(array.shape), "BYTES")
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    return InferRequest(model_name=model, infer_inputs=inputs)


async def test_simple_string_adds_and_subtracts_decimal_strings_with_int32_wrap() -> None:
    model = SimpleStringModel()
    first = strings([*range(15), 2**31 - 1])
    second = strings([1] * 16)
    reply = await model.predict(request("simple_string", INPUT0=first, INPUT1=second))
    sums, differences = (output.as_numpy() for output in reply.outputs)
    assert sums.tolist()[0][:3] == [b"1", b"2", b"3"]
    assert sums.tolist()[0][-1] == str(-(2**31)).encode()  # wraps like Triton's INT32 model
    assert differences.tolist()[0][:2] == [b"-1", b"0"]


async def test_simple_string_names_an_input_that_is_not_a_number() -> None:
    bad = strings(["seven", *range(15)])
    with pytest.raises(InvalidInput, match="INPUT1"):
        await SimpleStringModel().predict(request("simple_string", INPUT0=strings(list(range(16))), INPUT1=bad))


async def test_simple_identity_echoes_bytes_with_nul_characters() -> None:
    data = np.array([b"he\x00llo"] * 16, dtype=np.object_).reshape(1, 16)
    reply = await SimpleIdentityModel().predict(request("simple_identity", INPUT0=data))
    assert reply.outputs[0].as_numpy().tolist() == data.tolist()


def test_server_metadata_carries_the_configured_name() -> None:
    assert InferenceService(ModelRepository()).server_metadata()["name"] == "kubemind"
    assert InferenceService(ModelRepository(), "triton").server_metadata()["name"] == "triton"
