"""LLM fixtures for the vLLM tests: a tiny random-weight Llama and the converted SmolLM2.

The tiny Llama (2 layers, head_dim 64, a byte-level BPE tokenizer trained here) loads in
seconds and exercises the whole serving path; its text is noise. SmolLM2 is the real model,
used only where the answer must make sense.
"""

from __future__ import annotations

import json
from pathlib import Path

from kubemind_predictors.vllm.convert import (
    cache_root,
    convert_gguf,
    default_smollm2_dir,
    smollm2_gguf_path,
)

TINY_LLAMA_VERSION = "1"  # bump to rebuild cached copies after changing the recipe

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Kubernetes schedules pods; KServe serves models; Knative scales them to zero.",
    "A quick brown fox jumps over the lazy dog while the model streams tokens.",
    "Hello world! Continuous batching keeps the accelerator busy, 0123456789.",
] * 50


def tiny_llama_dir() -> Path:
    """Build (once per recipe version) and return the tiny Llama model folder."""
    target = cache_root() / "models" / f"tiny-llama-v{TINY_LLAMA_VERSION}"
    if (target / "config.json").is_file():
        return target
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    staging = target.with_name(target.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<s>", "<|im_end|>", "<|im_start|>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        _CORPUS,
        trainers.BpeTrainer(
            vocab_size=512,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(staging)

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 64: a size vLLM's CPU attention supports
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(staging, safe_serialization=True)
    (staging / "generation_config.json").write_text(
        json.dumps({"eos_token_id": tokenizer.eos_token_id, "temperature": 0.7})
    )
    staging.rename(target)
    return target


def smollm2_dir() -> Path:
    """The converted SmolLM2 folder (`make install` converts it; converted here if missing)."""
    return convert_gguf(smollm2_gguf_path(), default_smollm2_dir())


# Flags shared by every test server: float32 because vLLM's bf16 CPU kernels use AMX, which
# these sandboxed CPUs advertise but kill with SIGILL; eager mode and a 1 GiB KV cache start fast.
ENGINE_ARGS = ["--enforce_eager", "true", "--kv_cache_space", "1", "--dtype", "float32"]
# No VLLM_CPU_KVCACHE_SPACE: --kv_cache_space reaches vLLM as an engine argument.
ENGINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
ENGINE_READY_TIMEOUT = 300.0


def metric_value(exposition: str, name: str) -> float:
    """Sum of a Prometheus metric's samples (all label sets) in a /metrics page."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total
