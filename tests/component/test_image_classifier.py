"""Real photos through the image transformer, the Triton predictor and a real Triton server."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Mapping

import httpx
import numpy as np
import pytest
from PIL import Image

from kubemind.processes import ServerProcess
from tests.component.triton_fixtures import (
    photo,
    running_predictor,
    running_transformer,
    running_triton,
    stock_client,
)

ESPRESSO = "espresso"
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
MAX_PIXELS = 500_000  # grace_hopper (512x600) fits; the oversized test image does not


@pytest.fixture(scope="module")
def transformer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("image")
    with (
        running_triton(workdir, ["efficientnet_lite0"]) as triton,
        running_predictor(triton, workdir) as predictor,
        running_transformer(predictor, workdir, "--max_pixels", str(MAX_PIXELS), "--top_k", "3") as server,
    ):
        yield server


def v2_request(images: list[bytes]) -> dict[str, object]:
    encoded = [base64.b64encode(image).decode("ascii") for image in images]
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(encoded)], "data": encoded}]}


def infer_rest(server: ServerProcess, body: Mapping[str, object]) -> httpx.Response:
    return httpx.post(f"{server.http_url}/v2/models/efficientnet_lite0/infer", json=body, timeout=30)


def test_photos_get_their_imagenet_labels_over_rest(transformer: ServerProcess) -> None:
    response = infer_rest(transformer, v2_request([photo("coffee"), photo("chelsea"), photo("grace_hopper")]))

    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    labels = np.array(outputs["labels"]["data"]).reshape(3, 3)
    probabilities = np.array(outputs["probabilities"]["data"]).reshape(3, 3)
    assert labels[0][0] == ESPRESSO
    assert labels[1][0] in CAT_CLASSES
    assert {"military uniform", "academic gown", "mortarboard"} & set(labels[2])
    assert np.all(np.diff(probabilities, axis=1) <= 0), "top-k must be sorted, most probable first"
    assert probabilities[0][0] > 0.5


def test_stock_grpc_client_gets_the_same_answer(transformer: ServerProcess) -> None:
    images = [base64.b64encode(photo("coffee")).decode(), base64.b64encode(photo("chelsea")).decode()]
    request = {"model": "efficientnet_lite0", "inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": images}]}

    (answer,) = stock_client(transformer.grpc_address, request)
    rest = infer_rest(transformer, v2_request([photo("coffee"), photo("chelsea")])).json()

    assert "error" not in answer, answer
    assert answer["outputs"]["labels"][0][0] == ESPRESSO
    assert answer["outputs"]["labels"][1][0] in CAT_CLASSES
    rest_probabilities = next(o for o in rest["outputs"] if o["name"] == "probabilities")["data"]
    np.testing.assert_allclose(np.ravel(answer["outputs"]["probabilities"]), rest_probabilities, rtol=1e-5)


def test_v1_instances_with_b64_images(transformer: ServerProcess) -> None:
    body = {"instances": [{"image": {"b64": base64.b64encode(photo("coffee")).decode()}}]}

    response = httpx.post(f"{transformer.http_url}/v1/models/efficientnet_lite0:predict", json=body, timeout=30)

    assert response.status_code == 200, response.text
    (top,) = response.json()["predictions"]
    assert top[0]["label"] == ESPRESSO and top[0]["class_id"] == 967


def test_png_is_accepted_too(transformer: ServerProcess) -> None:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo("coffee"))).save(buffer, format="PNG")

    response = infer_rest(transformer, v2_request([buffer.getvalue()]))

    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"][0] == ESPRESSO


def oversized_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1000, 1000), "white").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("images", "message"),
    [
        pytest.param([photo("coffee"), b"definitely not an image"], "instance 1", id="undecodable"),
        pytest.param([photo("coffee"), photo("chelsea"), oversized_png()], "instance 2", id="over-pixel-limit"),
        pytest.param([], "no image", id="empty-tensor"),
        pytest.param([b"\x89PNG\r\n\x1a\n truncated"], "instance 0", id="truncated-png"),
    ],
)
def test_bad_images_are_400_naming_the_instance(transformer: ServerProcess, images: list[bytes], message: str) -> None:
    response = infer_rest(transformer, v2_request(images))

    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_bad_image_over_grpc_is_invalid_argument_naming_the_instance(transformer: ServerProcess) -> None:
    images = [base64.b64encode(photo("coffee")).decode(), base64.b64encode(b"not an image").decode()]
    request = {"model": "efficientnet_lite0", "inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": images}]}

    (answer,) = stock_client(transformer.grpc_address, request)

    assert answer["error"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "instance 1" in answer["error"]["message"]


def test_wrong_tensor_is_400_naming_the_tensor(transformer: ServerProcess) -> None:
    body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 3], "data": [0.0, 0.0, 0.0]}]}

    response = infer_rest(transformer, body)

    assert response.status_code == 400
    assert "pixels" in response.json()["error"]

