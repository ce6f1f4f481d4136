"""`kubemind size`: the memory request and limit a model server pod needs."""

from __future__ import annotations

import argparse
from typing import Any

from kubemind.manifests.sizing import (
    BYTES_PER_PARAMETER,
    DEFAULT_LIMIT_HEADROOM,
    DEFAULT_OVERHEAD_GIB,
    kv_cache_gib,
    size_model,
)


def register(subparsers: Any, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description="Print resources.requests/limits.memory for a model: weights + KV cache + runtime overhead.",
    )
    parser.add_argument(
        "--params", type=float, required=True, help="number of parameters, e.g. 135e6 or 8e9"
    )
    parser.add_argument("--dtype", choices=sorted(BYTES_PER_PARAMETER), default="bfloat16")
    parser.add_argument(
        "--kv-cache-gib", type=float, default=None, help="KV cache size (vLLM kv_cache_space)"
    )
    parser.add_argument(
        "--layers", type=int, help="with --kv-heads, --head-dim, --tokens: compute the KV cache"
    )
    parser.add_argument("--kv-heads", type=int)
    parser.add_argument("--head-dim", type=int)
    parser.add_argument("--tokens", type=int, help="cached tokens: max_model_len x max_num_seqs")
    parser.add_argument("--overhead-gib", type=float, default=DEFAULT_OVERHEAD_GIB)
    parser.add_argument(
        "--headroom",
        type=float,
        default=DEFAULT_LIMIT_HEADROOM,
        help="limit above request, as a fraction",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    kv = args.kv_cache_gib
    if kv is None:
        shape = (args.layers, args.kv_heads, args.head_dim, args.tokens)
        kv = kv_cache_gib(*shape, dtype=args.dtype) if all(shape) else 0.0
    try:
        size = size_model(args.params, args.dtype, kv, args.overhead_gib, args.headroom)
    except ValueError as exc:
        print(f"kubemind size: {exc}")
        return 2
    print(
        f"# weights {size.weights_gib:.2f} GiB + KV cache {size.kv_cache_gib:.2f} GiB"
        f" + overhead {size.overhead_gib:.2f} GiB\n"
        "resources:\n"
        f"  requests:\n    memory: {size.request_gib}Gi\n"
        f"  limits:\n    memory: {size.limit_gib}Gi"
    )
    return 0
