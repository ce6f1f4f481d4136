"""Memory for a model server pod: weights + KV cache + runtime overhead, plus headroom.

A pod whose limit is below its working set is OOMKilled, typically mid-load, and crash-loops;
the request must cover the steady state so the scheduler places it on a node that has it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BYTES_PER_PARAMETER = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "int8": 1.0, "int4": 0.5}
GIB = 1024**3
# Python, the serving framework, tokenizer and allocator slack, measured on kubemind's
# predictors (vLLM CPU around 1.2 GiB before weights).
DEFAULT_OVERHEAD_GIB = 1.5
# Limit above request: load-time peaks (weights are read, then converted) and fragmentation.
DEFAULT_LIMIT_HEADROOM = 0.25


@dataclass(frozen=True)
class MemorySize:
    weights_gib: float
    kv_cache_gib: float
    overhead_gib: float
    request_gib: int
    limit_gib: int


def kv_cache_gib(
    layers: int, kv_heads: int, head_dim: int, tokens: int, dtype: str = "bfloat16"
) -> float:
    """Keys and values for `tokens` cached tokens (max_model_len x max_num_seqs at most)."""
    return 2 * layers * kv_heads * head_dim * tokens * BYTES_PER_PARAMETER[dtype] / GIB


def size_model(
    parameters: float,
    dtype: str = "bfloat16",
    kv_cache: float = 0.0,
    overhead: float = DEFAULT_OVERHEAD_GIB,
    headroom: float = DEFAULT_LIMIT_HEADROOM,
) -> MemorySize:
    """Request and limit in whole GiB for a model of `parameters` weights."""
    if dtype not in BYTES_PER_PARAMETER:
        raise ValueError(f"unknown dtype {dtype!r}; one of {', '.join(BYTES_PER_PARAMETER)}")
    if parameters <= 0 or kv_cache < 0 or overhead < 0 or headroom < 0:
        raise ValueError(
            "parameters must be positive; kv cache, overhead and headroom not negative"
        )
    weights = parameters * BYTES_PER_PARAMETER[dtype] / GIB
    working_set = weights + kv_cache + overhead
    request = math.ceil(working_set)
    return MemorySize(
        weights_gib=weights,
        kv_cache_gib=kv_cache,
        overhead_gib=overhead,
        request_gib=request,
        limit_gib=math.ceil(working_set * (1 + headroom)),
    )
