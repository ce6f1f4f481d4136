"""Settings of the image transformer: what images it accepts and how it prepares them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubemind.settings import ComponentSettings


class ImagePreparationSettings(BaseSettings):
    """How an encoded image becomes the classifier's pixels: the image transformer's, and the job
    writer's for image uploads (the same limits, so both paths refuse the same images)."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True)

    image_size: int = Field(default=224, gt=0)
    """Side of the square model input in pixels (centre crop after resizing the short side)."""

    resize_ratio: float = Field(default=224 / 256, gt=0, le=1)
    """image_size / short side after resizing (the classic 224-of-256 crop)."""

    max_pixels: int = Field(default=40_000_000, gt=0)
    """Largest accepted image (width x height); larger ones get 400 before being decoded."""


class ImageTransformerSettings(ComponentSettings, ImagePreparationSettings):
    """A KServe transformer: encoded images in, top-k ImageNet labels out, via a v2 predictor."""

    model_config = SettingsConfigDict(
        env_prefix="KUBEMIND_IMAGE_",
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    model_name: str = "efficientnet_lite0"
    """Name of the model on the endpoint path; also the predictor model it forwards to unless
    predictor_model_name is set."""

    predictor_host: str = "127.0.0.1:8081"
    """host:port of the predictor (KServe's --predictor_host)."""

    predictor_protocol: Literal["grpc-v2", "v2"] = "grpc-v2"
    """Protocol to the predictor (KServe's --predictor_protocol); only grpc-v2 is implemented,
    v2 (REST) is refused at start."""

    predictor_model_name: str | None = None
    """Model name at the predictor; default: model_name."""

    predictor_input_name: str = "input"
    """Name of the predictor's UINT8 [n, image_size, image_size, 3] pixel tensor (resized RGB; the
    model's graph normalises it)."""

    predictor_output_name: str = "logits"
    """Name of the predictor's FP32 [n, classes] logits tensor."""

    predictor_shared_memory: bool = False
    """Hand the pixel tensor to the predictor through the system shared-memory extension instead
    of the gRPC wire. Only where both share /dev/shm: one host (`kubemind serve` turns it on) or
    one pod with a shared /dev/shm volume; off on a cluster, where the predictor is another pod. A
    predictor that cannot open the region is logged once and gets the wire."""

    predictor_shared_memory_slots: int = Field(default=8, gt=0)
    """Requests whose tensors may be in shared memory at once (one max_batch-sized segment each,
    created when first needed); requests beyond that go over the wire."""

    request_timeout_seconds: float = Field(default=10.0, gt=0)
    """Deadline for the call to the predictor, retries included; past it: 504."""

    retry_budget: int = Field(default=2, ge=0)
    """Retries per request after the predictor answered UNAVAILABLE."""

    max_batch: int = Field(default=32, gt=0)
    """Most images in one request."""

    top_k: int = Field(default=5, gt=0, le=1000)
    """Labels returned per image."""

    decode_workers: int = Field(default=2, gt=0)
    """Threads decoding and resizing images off the event loop."""
