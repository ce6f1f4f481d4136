#!/usr/bin/env bash
# Creates (or reuses) the virtual environment at $VENV and installs kubemind with every extra
# this machine can run, plus the Debian packages the tests need.
#
# The heavy part (third-party dependencies) is keyed by a hash of the dependency files and
# stamped inside the venv, so a cached venv (CI keeps one outside the clone) is reused as is.
# kubemind itself is installed editable on every call: cheap, and it re-points a cached venv at
# whichever clone is running now.
set -euo pipefail
shopt -s nullglob

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# Extras installed on this machine: requirements/local-extras.txt, one per line.
# llm-gpu needs CUDA and is left to GPU machines.
EXTRAS=${EXTRAS:-$(grep -v '^#' "$ROOT/requirements/local-extras.txt" | paste -sd, -)}

deps_hash=$(cat "$ROOT"/setup.py "$ROOT"/requirements/*.txt "$ROOT"/tools/install.sh "$ROOT"/tools/install.d/*.sh | sha256sum | cut -c1-16)
stamp="$VENV/.kubemind-deps-$deps_hash"

install_debian_packages() {
  local wanted=() pkg
  while read -r pkg; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || wanted+=("$pkg")
  done < "$ROOT/requirements/apt.txt"
  [[ ${#wanted[@]} -eq 0 ]] && return 0
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "install: Debian packages ${wanted[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${wanted[@]}"
}

install_debian_packages

if [[ ! -f "$stamp" ]]; then
  echo "install: building $VENV (extras: $EXTRAS)"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip setuptools wheel
  # The constraints file pins torch to the CPU build: a bare torch would pull CUDA wheels.
  "$VENV/bin/pip" install -q -c "$ROOT/requirements/constraints.txt" -e "$ROOT[$EXTRAS]"
  # Per-backend steps (side environments, model conversion, known-bad packages to remove):
  # each tools/install.d/*.sh runs with VENV and ROOT set, in name order.
  for step in "$ROOT"/tools/install.d/*.sh; do
    echo "install: $(basename "$step")"
    VENV="$VENV" ROOT="$ROOT" bash "$step"
  done
  rm -f "$VENV"/.kubemind-deps-*
  touch "$stamp"
fi

# Cheap: re-point the (possibly cached) venv at this checkout.
if [[ "$(cat "$VENV/.kubemind-source" 2>/dev/null)" != "$ROOT" ]]; then
  "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$ROOT"
  echo "$ROOT" > "$VENV/.kubemind-source"
fi
