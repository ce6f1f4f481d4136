"""Real photos through the image transformer, the Triton predictor and a real Triton server."""

from __future__ import annotations

import base64
import io
import re
import struct
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import numpy as np
import pytest
from orjson import dumps as orjson_dumps
from PIL import Image

from kubemind.processes import ServerProcess
from kubemind_predictors.triton.launcher import TritonServerProcess
from kubemind_transformers.image.preprocessing import ImagePreprocessor
from kubemind_transformers.image.settings import ImageTransformerSettings
from tests.component.triton_fixtures import (
    exported_models,
    photo,
    require_triton,
    running_predictor,
    running_transformer,
    running_triton,
    stock_client,
)

ESPRESSO = "espresso"
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
MAX_PIXELS = 500_000  # grace_hopper (512x600) fits; the oversized test image does not


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServerProcess]:
    with running_triton(tmp_path_factory.mktemp("triton"), ["efficientnet_lite0"]) as server:
        yield server


@pytest.fixture(scope="module")
def stack(
    triton: TritonServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """(predictor, transformer) on one real Triton."""
    workdir = tmp_path_factory.mktemp("image")
    with (
        running_predictor(triton, workdir) as predictor,
        running_transformer(predictor.grpc_address, workdir, "--max_pixels", str(MAX_PIXELS), "--top_k", "3") as server,
    ):
        yield predictor, server


@pytest.fixture(scope="module")
def transformer(stack: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return stack[1]


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


def float_path_logits(pixels: np.ndarray) -> np.ndarray:
    """What the FP32 [n, 3, 224, 224] contract gave for these pixels: the transformer's numpy
    normalisation (the constants it used, on [0, 1] pixels) fed to the network itself, i.e. the
    served graph cut below the nodes export.py prepends."""
    import onnx
    import onnx.utils
    import onnxruntime

    model = onnx.load(str(exported_models(require_triton()) / "efficientnet_lite0.onnx"))
    network = onnx.utils.Extractor(model).extract_model(["normalised_input"], ["logits"])
    mean, std = np.float32(0.498), np.float32(0.502)
    scale, offset = np.float32(1.0) / (np.float32(255.0) * std), -mean / std
    normalised = pixels.transpose(0, 3, 1, 2) * scale + offset
    session = onnxruntime.InferenceSession(network.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["logits"], {"normalised_input": normalised.astype(np.float32)})[0])


def served_graph_logits(pixels: np.ndarray) -> np.ndarray:
    import onnxruntime

    path = exported_models(require_triton()) / "efficientnet_lite0.onnx"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["logits"], {"input": pixels})[0])


def test_uint8_pixels_give_what_the_float_contract_gave(transformer: ServerProcess) -> None:
    names = ["coffee", "chelsea", "grace_hopper"]
    preprocessor = ImagePreprocessor(ImageTransformerSettings())
    pixels = preprocessor.new_batch(len(names))
    for index, name in enumerate(names):
        preprocessor.prepare_encoded(index, photo(name), pixels[index])

    reference = float_path_logits(pixels)
    served = served_graph_logits(pixels)
    response = infer_rest(transformer, v2_request([photo(name) for name in names]))

    assert pixels.dtype == np.uint8 and pixels.shape == (3, 224, 224, 3)
    np.testing.assert_allclose(served, reference, rtol=1e-4, atol=1e-4)
    assert list(served.argmax(axis=1)) == list(reference.argmax(axis=1))
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    reference_probabilities = np.exp(reference - reference.max(axis=1, keepdims=True))
    reference_probabilities /= reference_probabilities.sum(axis=1, keepdims=True)
    class_ids = np.array(outputs["class_ids"]["data"]).reshape(3, 3)
    assert list(class_ids[:, 0]) == list(reference.argmax(axis=1)), "top-1 through the stack"
    np.testing.assert_allclose(
        np.array(outputs["probabilities"]["data"]).reshape(3, 3),
        np.take_along_axis(reference_probabilities, class_ids, axis=1),
        rtol=1e-4,
        atol=1e-5,
    )


def test_the_transformer_straight_on_triton_answers_as_through_the_predictor(
    triton: TritonServerProcess, transformer: ServerProcess, tmp_path: Path
) -> None:
    """components/triton-direct: no kubemind predictor between the transformer and Triton."""
    images = [photo("coffee"), photo("chelsea")]
    with running_transformer(triton.grpc_url, tmp_path, "--top_k", "3") as direct:
        answer = infer_rest(direct, v2_request(images))
        bad = infer_rest(direct, v2_request([photo("coffee"), b"definitely not an image"]))
    through_predictor = infer_rest(transformer, v2_request(images))

    assert answer.status_code == 200, answer.text
    direct_outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    outputs = {o["name"]: o["data"] for o in through_predictor.json()["outputs"]}
    assert direct_outputs["labels"] == outputs["labels"]
    np.testing.assert_allclose(direct_outputs["probabilities"], outputs["probabilities"], rtol=1e-5)
    assert bad.status_code == 400 and "instance 1" in bad.json()["error"], "the transformer still validates"


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
        pytest.param([], "batch size 0", id="empty-tensor"),
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



# -- issue 18: decompression bombs, formats, batch 0, messages -----------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height (what a 109 kB 30000x30000 bomb shows)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b"")


def jpeg_header_claiming(width: int, height: int) -> bytes:
    """A real JPEG with its frame header (SOF0) patched to claim width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "white").save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"


HOSTILE_IMAGES = {
    "png-30000": (png_header_claiming(30000, 30000), "instance 0: image of 30000x30000 pixels is over the limit of 500000"),
    "jpeg-65500": (jpeg_header_claiming(65500, 65500), "instance 0: image of 65500x65500 pixels is over the limit of 500000"),
    "eps": (EPS, "instance 0: not an image in an accepted format (JPEG, PNG, GIF, BMP, WEBP, TIFF)"),
    "no-address": (b"definitely not an image", "instance 0: not an image in an accepted format"),
}


@pytest.mark.parametrize(("image", "message"), HOSTILE_IMAGES.values(), ids=list(HOSTILE_IMAGES))
def test_bombs_and_foreign_formats_are_400(transformer: ServerProcess, image: bytes, message: str) -> None:
    response = infer_rest(transformer, v2_request([image]))
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(message)
    assert not re.search(r"0x[0-9a-f]{6,}", response.json()["error"]), "no memory address"


def test_bombs_and_foreign_formats_are_invalid_argument_over_grpc(transformer: ServerProcess) -> None:
    requests = [
        {"model": "efficientnet_lite0", "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(image).decode()]}]}
        for image, _ in HOSTILE_IMAGES.values()
    ]
    answers = stock_client(transformer.grpc_address, *requests)
    for answer, (_, message) in zip(answers, HOSTILE_IMAGES.values(), strict=True):
        assert answer["error"]["status"] == "StatusCode.INVALID_ARGUMENT"
        assert answer["error"]["message"].startswith(message)


def test_raw_eps_bytes_are_refused_as_base64_ones_are(transformer: ServerProcess) -> None:
    body = orjson_dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(EPS) + 4}}]})
    blob = struct.pack("<I", len(EPS)) + EPS
    response = httpx.post(
        f"{transformer.http_url}/v2/models/efficientnet_lite0/infer",
        content=body + blob,
        headers={"Inference-Header-Content-Length": str(len(body)), "Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("instance 0:")


def test_an_empty_image_batch_is_400_at_the_transformer(transformer: ServerProcess) -> None:
    """Batch 0 at the transformer ('image' of shape [0]): a 400 naming the tensor, not a 500."""
    response = infer_rest(transformer, v2_request([]))
    assert response.status_code == 400, response.text
    assert "image" in response.json()["error"], response.text


def test_batch_zero_is_400_at_the_predictor(stack: tuple[ServerProcess, ServerProcess]) -> None:
    predictor = stack[0]
    body = {"inputs": [{"name": "input", "datatype": "UINT8", "shape": [0, 224, 224, 3], "data": []}]}
    metadata = httpx.get(f"{predictor.http_url}/v2/models/efficientnet_lite0", timeout=30).json()
    body["inputs"][0]["name"] = metadata["inputs"][0]["name"]
    response = httpx.post(f"{predictor.http_url}/v2/models/efficientnet_lite0/infer", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert "batch size 0" in response.json()["error"]
