"""Image uploads to the jobs route, with real parts: Triton (EfficientNet-Lite0 and `simple`), the
job writer, a CV worker, RabbitMQ, Postgres, Redis, a local webhook receiver, and the image
transformer on the same predictor for the synchronous answer.

An uploaded image becomes the model's UINT8 pixel request exactly as the image transformer makes
it, so the job's result is the synchronous path's; a bad upload is refused before anything is
written, with the synchronous path's own message about the image.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from kubemind.processes import ServerProcess
from kubemind_predictors.triton.launcher import TritonServerProcess
from kubemind_transformers.image.labels import top_k
from kubemind_transformers.image.preprocessing import ImagePreprocessor
from kubemind_transformers.image.settings import ImageTransformerSettings
from tests.component.jobs_fixtures import (
    WAIT_SECONDS,
    WEBHOOK_SECRET,
    JobsPlumbing,
    RedisTarget,
    WebhookReceiver,
    assert_stored_exactly_once,
    require_rabbitmq,
    running_workers,
    running_writer,
    sql,
)
from tests.component.triton_fixtures import photo, running_transformer, running_triton

MODEL = "efficientnet_lite0"
MAX_PIXELS = 500_000  # grace_hopper (512x600) fits; a 1000x1000 image does not
TOP_K = 5


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServerProcess]:
    with running_triton(tmp_path_factory.mktemp("jobs-images-triton"), [MODEL, "simple"]) as server:
        yield server


@pytest.fixture(scope="module")
def plumbing(postgres_dsn: str, redis_target: RedisTarget) -> JobsPlumbing:
    return JobsPlumbing(postgres_dsn, redis_target, "rabbitmq", require_rabbitmq(), f"cv-jobs-images-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def stack(
    triton: TritonServerProcess, plumbing: JobsPlumbing, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """(job writer, image transformer in front of that writer's predictor), the same pixel limit."""
    folder = tmp_path_factory.mktemp("jobs-images")
    with (
        running_writer(triton, plumbing, folder / "writer.log", "--max_pixels", str(MAX_PIXELS)) as writer,
        running_transformer(writer.grpc_address, folder, "--max_pixels", str(MAX_PIXELS), "--top_k", str(TOP_K)) as transformer,
    ):
        yield writer, transformer


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as listening:
        yield listening


def encoded(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def as_png(jpeg: bytes) -> bytes:
    return encoded(Image.open(io.BytesIO(jpeg)).convert("RGB"), "PNG")


def upload_form(writer: ServerProcess, image: bytes, callback: str | None, model: str = MODEL, **headers: str) -> httpx.Response:
    fields = {"callback_url": callback} if callback is not None else {}
    return httpx.post(
        f"{writer.http_url}/v2/models/{model}/jobs",
        files={"image": ("upload.jpg", image, "image/jpeg")},
        data=fields,
        headers=headers,
        timeout=30,
    )


def upload_raw(writer: ServerProcess, image: bytes, callback: str | None, content_type: str = "image/jpeg") -> httpx.Response:
    params = {"callback_url": callback} if callback is not None else {}
    return httpx.post(
        f"{writer.http_url}/v2/models/{MODEL}/jobs", content=image, params=params, headers={"content-type": content_type}, timeout=30
    )


def logits(result: dict[str, Any]) -> np.ndarray:
    (output,) = result["outputs"]
    assert output["name"] == "logits" and output["datatype"] == "FP32"
    return np.array(output["data"], dtype=np.float32).reshape(output["shape"])


def sync_pixel_infer(writer: ServerProcess, image: bytes) -> np.ndarray:
    """The synchronous infer of the pixels the image transformer's preprocessing makes of `image`."""
    preprocessor = ImagePreprocessor(ImageTransformerSettings())
    pixels = preprocessor.new_batch(1)
    preprocessor.prepare(0, image, pixels[0])
    body = {"inputs": [{"name": "input", "datatype": "UINT8", "shape": list(pixels.shape), "data": pixels.ravel().tolist()}]}
    reply = httpx.post(f"{writer.http_url}/v2/models/{MODEL}/infer", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    return logits(reply.json())


def sync_transformer_infer(transformer: ServerProcess, image: bytes) -> dict[str, np.ndarray]:
    """The synchronous image path: the transformer's top-k for the same encoded image."""
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(image).decode()]}]}
    reply = httpx.post(f"{transformer.http_url}/v2/models/{MODEL}/infer", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in reply.json()["outputs"]}


def jobs_in_db(dsn: str) -> int:
    return int(sql(dsn, "SELECT count(*) AS n FROM kubemind_jobs")[0]["n"])


# -- an upload is a job whose result is the synchronous answer --------------------------------------
def test_uploaded_images_become_jobs_whose_results_equal_the_sync_infer(
    stack: tuple[ServerProcess, ServerProcess], plumbing: JobsPlumbing, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    writer, transformer = stack
    images = {"coffee": photo("coffee"), "grace_hopper": photo("grace_hopper"), "chelsea-png": as_png(photo("chelsea"))}
    replies = {
        "coffee": upload_form(writer, images["coffee"], receiver.url()),
        "grace_hopper": upload_raw(writer, images["grace_hopper"], receiver.url()),
        "chelsea-png": upload_raw(writer, images["chelsea-png"], receiver.url(), "image/png"),
    }
    for name, reply in replies.items():
        assert reply.status_code == 202, (name, reply.text)
    jobs = {reply.json()["id"]: name for name, reply in replies.items()}
    stored = sql(plumbing.database_url, "SELECT id::text, request FROM kubemind_jobs WHERE id::text = ANY($1)", list(jobs))
    assert len(stored) == 3
    with running_workers(writer.grpc_address, plumbing, tmp_path, 1, "--batch_size", "8", "--batch_wait_seconds", "0.2"):
        hooks = receiver.wait_for(list(jobs), WAIT_SECONDS)
    assert receiver.bad_signatures == 0
    assert_stored_exactly_once(plumbing.database_url, list(jobs))
    for job_id, name in jobs.items():
        (hook,) = {h.headers["webhook-id"]: h for h in hooks[job_id]}.values()
        data = hook.payload["data"]
        assert data["state"] == "succeeded", data
        got = logits(data["result"])
        assert got.shape == (1, 1000)
        # the model's answer to the transformer's pixels (batched with other jobs: float noise only)
        np.testing.assert_allclose(got, sync_pixel_infer(writer, images[name]), rtol=1e-5, atol=1e-5)
        # and the synchronous image path's top-k for the same encoded image
        sync = sync_transformer_infer(transformer, images[name])
        class_ids, probabilities = top_k(got, TOP_K)
        assert class_ids.tolist() == sync["class_ids"].tolist(), name
        np.testing.assert_allclose(probabilities, sync["probabilities"], rtol=1e-5, atol=1e-6)
    labels = {name: sync_transformer_infer(transformer, images[name])["labels"][0][0] for name in images}
    assert labels["coffee"] == "espresso"


def test_the_serve_sample_call_uploads_an_image_and_prints_its_signed_webhook(
    stack: tuple[ServerProcess, ServerProcess], plumbing: JobsPlumbing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `kubemind serve --only jobs-worker` prints for the writer, pasted into a shell: curl
    uploads grace_hopper.jpg, the worker's webhook reaches the snippet's listener, its signature
    verifies, and the top classes it prints are the synchronous image path's."""
    import subprocess

    from kubemind.local.services import local_services

    writer, transformer = stack
    monkeypatch.setenv("KUBEMIND_WORKER_WEBHOOK_SECRET", WEBHOOK_SECRET)  # what the workers sign with
    sample = {s.name: s for s in local_services()}["jobs"].sample_call(writer.http_url, writer.grpc_address)
    before = jobs_in_db(plumbing.database_url)
    with running_workers(writer.grpc_address, plumbing, tmp_path, 1, "--batch_wait_seconds", "0"):
        run = subprocess.run(["bash", "-c", sample], capture_output=True, text=True, timeout=120, cwd=tmp_path)

    assert run.returncode == 0, run.stdout + run.stderr
    submitted, webhook = run.stdout.strip().splitlines()[-2:]
    assert json.loads(submitted)["state"] == "queued"
    assert jobs_in_db(plumbing.database_url) == before + 1
    top = [name for name, _ in ast.literal_eval(webhook.removeprefix("signed webhook: "))]
    assert top == sync_transformer_infer(transformer, photo("grace_hopper"))["labels"][0][:3].tolist()


def test_the_same_idempotency_key_on_an_upload_returns_the_same_job(
    stack: tuple[ServerProcess, ServerProcess], plumbing: JobsPlumbing, receiver: WebhookReceiver
) -> None:
    writer, _ = stack
    key = f"upload-{uuid.uuid4()}"
    first = upload_form(writer, photo("coffee"), receiver.url(), **{"idempotency-key": key})
    second = upload_form(writer, photo("coffee"), receiver.url(), **{"idempotency-key": key})

    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert first.json()["id"] == second.json()["id"]
    assert sql(plumbing.database_url, "SELECT count(*) AS n FROM kubemind_jobs WHERE idempotency_key = $1", key)[0]["n"] == 1


# -- bad uploads: 4xx naming the field, nothing written ---------------------------------------------
WHITE = Image.new("RGB", (64, 64), "white")
BAD_IMAGES = {
    "not-an-image": b"definitely not an image",
    "too-many-pixels": encoded(Image.new("RGB", (1000, 1000), "white"), "PNG"),
    "disallowed-format": encoded(WHITE, "PPM"),  # Pillow decodes PPM; neither path accepts it
    "truncated-png": b"\x89PNG\r\n\x1a\n truncated",
}


@pytest.mark.parametrize("how", ["form", "raw"])
@pytest.mark.parametrize("image", BAD_IMAGES.values(), ids=list(BAD_IMAGES))
def test_bad_images_are_400_naming_the_image_with_the_sync_paths_reason(
    stack: tuple[ServerProcess, ServerProcess], plumbing: JobsPlumbing, receiver: WebhookReceiver, image: bytes, how: str
) -> None:
    writer, transformer = stack
    before = jobs_in_db(plumbing.database_url)

    reply = upload_form(writer, image, receiver.url()) if how == "form" else upload_raw(writer, image, receiver.url())
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(image).decode()]}]}
    sync = httpx.post(f"{transformer.http_url}/v2/models/{MODEL}/infer", json=body, timeout=30)

    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error.startswith("image: "), error
    assert sync.status_code == 400
    assert error.removeprefix("image: ") == sync.json()["error"].removeprefix("instance 0: "), "the sync path's reason"
    assert jobs_in_db(plumbing.database_url) == before


def test_a_form_without_its_fields_is_400_naming_them(stack: tuple[ServerProcess, ServerProcess], plumbing: JobsPlumbing, receiver: WebhookReceiver) -> None:
    writer, _ = stack
    before = jobs_in_db(plumbing.database_url)

    no_callback_form = upload_form(writer, photo("coffee"), None)
    no_callback_raw = upload_raw(writer, photo("coffee"), None)
    private_callback = upload_raw(writer, photo("coffee"), "http://10.1.2.3/hook")
    no_image = httpx.post(f"{writer.http_url}/v2/models/{MODEL}/jobs", data={"callback_url": receiver.url()},
                          files={"picture": ("a.jpg", photo("coffee"), "image/jpeg")}, timeout=30)  # fmt: skip
    empty = upload_raw(writer, b"", receiver.url())
    garbled = httpx.post(f"{writer.http_url}/v2/models/{MODEL}/jobs", content=b"--x\r\nnot a part",
                         headers={"content-type": "multipart/form-data; boundary=x"}, timeout=30)  # fmt: skip

    for reply in (no_callback_form, no_callback_raw, private_callback):
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"].startswith("callback_url: "), reply.text
    assert no_image.status_code == 400 and no_image.json()["error"].startswith("image: required"), no_image.text
    assert empty.status_code == 400 and empty.json()["error"].startswith("image: "), empty.text
    assert garbled.status_code == 400 and garbled.json()["error"].startswith(("body: malformed", "image: required")), garbled.text
    assert jobs_in_db(plumbing.database_url) == before


def test_an_upload_to_a_model_without_a_pixel_input_is_415(
    stack: tuple[ServerProcess, ServerProcess], plumbing: JobsPlumbing, receiver: WebhookReceiver
) -> None:
    writer, _ = stack
    before = jobs_in_db(plumbing.database_url)

    reply = upload_form(writer, photo("coffee"), receiver.url(), model="simple")
    json_job = httpx.post(f"{writer.http_url}/v2/models/{MODEL}/jobs", content=b"not json", headers={"content-type": "application/json"}, timeout=30)

    assert reply.status_code == 415, reply.text
    assert "simple" in reply.json()["error"] and "input" in reply.json()["error"]
    assert json_job.status_code == 400  # JSON bodies are still parsed as JSON
    assert jobs_in_db(plumbing.database_url) == before
