"""Settings of the image transformer: what images it accepts and how it prepares them."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kubemind.settings import ComponentSettings

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageTransformerSettings(ComponentSettings):
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

    predictor_protocol: str = "grpc-v2"
    """Protocol to the predictor: grpc-v2 or v2 (REST)."""

    predictor_model_name: str | None = None
    """Model name at the predictor; default: model_name."""

    predictor_input_name: str = "input"
    """Name of the predictor's FP32 NCHW image tensor."""

    request_timeout_seconds: float = Field(default=10.0, gt=0)
    """Deadline for the call to the predictor."""

    image_size: int = Field(default=224, gt=0)
    """Side of the square model input in pixels (centre crop after resizing the short side)."""

    resize_ratio: float = Field(default=224 / 256, gt=0, le=1)
    """image_size / short side after resizing (the classic 224-of-256 crop)."""

    mean: list[float] = Field(default_factory=lambda: list(IMAGENET_MEAN))
    """Per-channel RGB mean on [0, 1] pixels; comma-separated on the CLI."""

    std: list[float] = Field(default_factory=lambda: list(IMAGENET_STD))
    """Per-channel RGB standard deviation on [0, 1] pixels; comma-separated on the CLI."""

    max_pixels: int = Field(default=40_000_000, gt=0)
    """Largest accepted image (width x height); larger ones get 400 before being decoded."""

    max_batch: int = Field(default=32, gt=0)
    """Most images in one request."""

    top_k: int = Field(default=5, gt=0, le=1000)
    """Labels returned per image."""

    decode_workers: int = Field(default=2, gt=0)
    """Threads decoding and resizing images off the event loop."""
