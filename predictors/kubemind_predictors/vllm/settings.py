"""Settings of the vLLM predictor (`python -m kubemind_predictors.vllm`).

The memory-related fields (`gpu_memory_utilization`, `kv_cache_space`, `max_model_len`,
`max_num_seqs`) decide whether the engine fits on the device and how many sequences it batches;
they are the first thing to change after an out-of-memory at start-up.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kubemind.settings import ComponentSettings


class VLLMSettings(ComponentSettings):
    """Serve one Hugging Face-format LLM folder with vLLM over OpenAI, v2 infer and v2 generate."""

    model_config = SettingsConfigDict(env_prefix="KUBEMIND_VLLM_")

    model_dir: str = "/mnt/models"
    """Hugging Face-format model folder (config.json, weights, tokenizer); KServe's storage
    initializer downloads to /mnt/models."""

    served_model_name: str | None = None
    """Name the OpenAI API reports for the model; defaults to model_name."""

    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    """Weight and activation dtype; auto takes the model config's torch_dtype (bfloat16 on CPU)."""

    max_model_len: int | None = Field(default=None, gt=0)
    """Longest prompt + completion in tokens; default the model's own context length. Lower it
    to shrink the KV cache a single sequence needs."""

    max_num_seqs: int = Field(default=256, gt=0)
    """Most sequences batched in one engine step (continuous batching width)."""

    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    """Fraction of GPU memory vLLM may take for weights, activations and KV cache (GPU only)."""

    kv_cache_space: int = Field(default=4, gt=0)
    """KV-cache size in GiB on CPU (vLLM's VLLM_CPU_KVCACHE_SPACE); ignored on a GPU."""

    enforce_eager: bool = False
    """Run without CUDA graphs / torch.compile: slower steps, faster start, less memory."""

    tensor_parallel_size: int = Field(default=1, gt=0)
    """Number of devices the weights are sharded across."""

    seed: int = 0
    """Engine seed for reproducible sampling when a request gives none."""

    default_temperature: float | None = Field(default=None, ge=0)
    """Temperature when a request gives none; unset falls back to the model's generation_config."""

    default_top_p: float | None = Field(default=None, gt=0, le=1)
    """top_p when a request gives none; unset falls back to the model's generation_config."""

    default_top_k: int | None = Field(default=None, ge=-1)
    """top_k when a request gives none (-1 or 0 disables); unset falls back to generation_config."""

    default_max_tokens: int = Field(default=256, gt=0)
    """Completion length cap when a request gives no max_tokens."""

    engine_start_timeout_seconds: float = Field(default=600.0, gt=0)
    """How long start() waits for the engine (model load, KV-cache allocation) before failing."""

    request_timeout_seconds: float = Field(default=600.0, gt=0)
    """Deadline for one generation; past it the request is aborted in the engine (504)."""

    @property
    def openai_model_name(self) -> str:
        """The name clients pass as `model` on the OpenAI routes."""
        return self.served_model_name or self.model_name
