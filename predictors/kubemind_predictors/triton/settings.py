"""Settings of the Triton predictor: where Triton is, how long to wait for it, how it is launched."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kubemind.settings import ComponentSettings


class TritonPredictorSettings(ComponentSettings):
    """A KServe predictor that forwards Open Inference Protocol requests to Triton Inference Server."""

    model_config = SettingsConfigDict(
        env_prefix="KUBEMIND_TRITON_",
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    models: list[str] = Field(default_factory=lambda: ["efficientnet_lite0", "minilm", "simple"])
    """Triton models this predictor serves (each under its own name); comma-separated on the CLI."""

    triton_host: str = "127.0.0.1"
    """Host of Triton's gRPC (and HTTP) endpoint."""

    triton_grpc_port: int = Field(default=8001, ge=0, le=65535)
    """Triton's gRPC port: the predictor forwards inference here (0: pick a free one when launching)."""

    triton_http_port: int = Field(default=8000, ge=0, le=65535)
    """Triton's HTTP port: used for the launcher's readiness probe (0: pick a free one when launching)."""

    triton_metrics_port: int = Field(default=8002, ge=0, le=65535)
    """Triton's Prometheus port (0: pick a free one when launching)."""

    launch_triton: bool = False
    """Start (and stop) a local tritonserver process with the predictor; off on a cluster, where
    Triton runs in its own container."""

    triton_binary: Path | None = None
    """Path of the tritonserver binary; default: the one unpacked from nvidia-pytriton by
    tools/install.d/40-triton.sh."""

    model_dir: Path | None = None
    """A registered Triton repository (flavor triton-repo) the storage initializer downloaded:
    served exactly as it is, never written to; --models and --model_repository are then unused."""

    model_repository: Path | None = None
    """Triton model repository; default: built by kubemind_predictors.triton.repository into the
    kubemind cache."""

    onnx_model_dir: Path | None = None
    """Folder holding efficientnet_lite0.onnx; default: the kubemind cache the install step fills."""

    startup_timeout_seconds: float = Field(default=120.0, gt=0)
    """How long the launcher waits for Triton and its models to report ready."""

    request_timeout_seconds: float = Field(default=10.0, gt=0)
    """Per-request deadline for the call to Triton, retries included; past it: 504."""

    retry_budget: int = Field(default=2, ge=0)
    """Retries per request after UNAVAILABLE (never on other errors)."""

    retry_backoff_seconds: float = Field(default=0.05, ge=0)
    """First retry delay; doubles for each further retry, always within the deadline."""

    unavailable_cooldown_seconds: float = Field(default=0.5, ge=0)
    """After Triton answered UNAVAILABLE, requests fail fast with 503 for this long instead of
    piling up; the next request after it probes Triton again."""

    protocol: Literal["grpc-v2", "v2"] = "grpc-v2"
    """Transport to Triton: grpc-v2 (KServe's InferenceGRPCClient) or v2 (REST)."""

    passthrough: bool = True
    """v2 inference is forwarded to Triton as bytes: a gRPC request as it was serialised, a
    binary REST request's tensors as the body carries them (names, datatypes and shapes checked
    against the signature; the tensor data never decoded into numpy). REST requests with JSON
    data or shared-memory regions are decoded either way. Off: every request is decoded and
    encoded again."""

    cpu_threads: int = Field(default=1, ge=1)
    """Intra-op threads for ONNX Runtime inside each Triton Python-backend model instance."""
