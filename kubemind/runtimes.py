"""The one flavor -> runtime table: which kubemind component serves a registered model.

The flavor is what `kubemind models register --flavor` recorded (it travels in the manifest
and in `kubemind-model.json`). `kubemind serve --model` starts the runtime's module locally; on
a cluster the ClusterServingRuntime `serving_runtime` runs the same module and lists
`model_format` in its `supportedModelFormats` (tests/manifests/test_runtime_table.py keeps the
two equal). A flavor missing here has no runtime, and saying so names the ones that exist.

Stdlib only: importing this must not import any backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubemind.errors import InvalidInput


@dataclass(frozen=True)
class Runtime:
    """How one flavor is served."""

    flavor: str
    module: str
    """Runnable with `python -m`; takes the ComponentSettings flags (--host, --http_port, ...)."""
    model_format: str
    """KServe's model-format name (ServingRuntime `supportedModelFormats[].name`)."""
    serving_runtime: str
    """The ClusterServingRuntime in inferenceservices/base/runtimes that serves it on a cluster."""
    takes_model_name: bool = True
    """Whether the component takes --model_name (a Triton repository names its own models)."""
    local_args: tuple[str, ...] = ()
    """Extra flags for a run on this machine (CPU-only, free loopback ports)."""
    env: tuple[tuple[str, str], ...] = ()
    """Environment the component needs wherever it runs."""
    ready_timeout: float = 120.0
    """Seconds a local start may take before it is reported as failed."""

    def args(self, model_name: str, model_dir: str | Path) -> list[str]:
        """The flags every container of this runtime gets for one model folder."""
        name = ["--model_name", model_name] if self.takes_model_name else []
        return [*name, "--model_dir", str(model_dir)]


RUNTIMES: dict[str, Runtime] = {
    runtime.flavor: runtime
    for runtime in (
        Runtime("onnx", "kubemind_predictors.onnx", "onnx", "kubemind-onnx"),
        Runtime(
            "triton-repo",
            "kubemind_predictors.triton",
            "triton",
            "kubemind-triton",
            takes_model_name=False,
            # Locally the predictor launches its own tritonserver on free loopback ports.
            local_args=(
                "--launch_triton", "true",
                "--triton_http_port", "0", "--triton_grpc_port", "0", "--triton_metrics_port", "0",
            ),
            ready_timeout=180.0,
        ),
        Runtime(
            "hf-llm",
            "kubemind_predictors.vllm",
            "huggingface",
            "kubemind-vllm",
            # CPU flags for a local run: float32 (bf16 kernels die with SIGILL on these CPUs),
            # eager, a 1 GiB KV cache; the context length is the model's own.
            local_args=("--dtype", "float32", "--enforce_eager", "true", "--kv_cache_space", "1"),
            env=(("HF_HUB_OFFLINE", "1"),),
            ready_timeout=600.0,
        ),
        Runtime("pyfunc", "kubemind_predictors.pyfunc", "mlflow", "kubemind-pyfunc"),
    )
}


class NoRuntime(InvalidInput):
    """A registered flavor that no kubemind component serves."""


def runtime_for(flavor: str) -> Runtime:
    """The runtime of a flavor; NoRuntime (one line naming the flavor and the runtimes) if none."""
    try:
        return RUNTIMES[flavor]
    except KeyError:
        known = ", ".join(f"{f} ({r.module})" for f, r in RUNTIMES.items())
        raise NoRuntime(
            f"no kubemind runtime serves flavor {flavor!r}; runtimes exist for: {known}"
        ) from None


__all__ = ["RUNTIMES", "NoRuntime", "Runtime", "runtime_for"]
