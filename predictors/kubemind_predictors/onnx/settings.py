"""Settings of the ONNX Runtime predictor (`python -m kubemind_predictors.onnx`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kubemind.settings import ComponentSettings


class OnnxSettings(ComponentSettings):
    """Serve one ONNX model in-process with ONNX Runtime, batching concurrent requests."""

    model_config = SettingsConfigDict(env_prefix="KUBEMIND_ONNX_")

    model_dir: Path = Path("/mnt/models")
    """Model folder; KServe's storage initializer (or `python -m kubemind_registry.initializer`)
    downloads to /mnt/models. Its kubemind-model.json gives the signature and the served version."""

    model_file: str | None = None
    """The .onnx file, relative to model_dir; default: the one *.onnx file the folder holds."""

    versions: list[str] = Field(default_factory=lambda: ["1"])
    """Served versions when the folder has no kubemind-model.json (otherwise: the MLflow version)."""

    max_batch_size: int = Field(default=64, ge=0)
    """Most rows one execution runs, summed over the requests batched into it; also the largest
    batch one request may carry. 0 turns batching off. Only used when every input and output of
    the graph has a dynamic first dimension."""

    max_queue_delay_ms: float = Field(default=0.0, ge=0)
    """How long the oldest queued request waits for more rows before its batch runs. 0 (Triton's
    default) batches only what queued while the model was busy: no added latency at low load."""

    instances: int = Field(default=1, ge=1)
    """Executions that may run at once (Triton's instance count)."""

    intra_op_threads: int = Field(default=1, ge=0)
    """ONNX Runtime intra-op threads per execution; 0 lets ONNX Runtime use one per core."""

    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    """ONNX Runtime graph optimization level."""

    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    """ONNX Runtime execution providers, in order of preference (comma-separated on the CLI)."""
