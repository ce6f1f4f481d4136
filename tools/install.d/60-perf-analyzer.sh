#!/usr/bin/env bash
# Triton's perf_analyzer for `make bench`, next to (not inside) the main venv.
#
# The binary ships in the tritonclient 2.51.0 wheel (the main venv pins tritonclient 2.73.0, whose
# wheel no longer carries it), so only the binary is unpacked. It links libb64 (Debian's libb64-0d,
# in requirements/apt.txt) and libcudart.so.12 even on a CPU: that library comes from PyPI's
# nvidia-cuda-runtime-cu12 wheel, unpacked beside it. $VENV/bin/perf_analyzer wraps both.
set -euo pipefail

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
HOME_DIR="$VENV/share/kubemind/perf_analyzer"
TRITONCLIENT_VERSION=2.51.0
CUDART_VERSION=12.9.79
stamp="$HOME_DIR/.perf-analyzer-$TRITONCLIENT_VERSION-cudart-$CUDART_VERSION"
[[ -f "$stamp" && -x "$VENV/bin/perf_analyzer" ]] && exit 0

rm -rf "$HOME_DIR"
mkdir -p "$HOME_DIR/bin" "$HOME_DIR/lib"
download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
"$PY" -m pip download -q --no-deps -d "$download" \
  "tritonclient==$TRITONCLIENT_VERSION" "nvidia-cuda-runtime-cu12==$CUDART_VERSION"
"$PY" - "$download" "$HOME_DIR" <<'PY'
import sys
import zipfile
from pathlib import Path

download, home = Path(sys.argv[1]), Path(sys.argv[2])
wanted = {"perf_analyzer": home / "bin", "libcudart.so.12": home / "lib"}
for wheel in download.glob("*.whl"):
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            base = name.rsplit("/", 1)[-1]
            if base in wanted:
                target = wanted[base] / base
                target.write_bytes(archive.read(name))
                target.chmod(0o755)
missing = [name for name, folder in wanted.items() if not (folder / name).exists()]
if missing:
    sys.exit(f"perf_analyzer: not found in the downloaded wheels: {', '.join(missing)}")
PY
cat > "$VENV/bin/perf_analyzer" <<WRAP
#!/usr/bin/env bash
# Triton's perf_analyzer $TRITONCLIENT_VERSION with its CUDA runtime library (runs on the CPU).
export LD_LIBRARY_PATH="$(cd "$HOME_DIR" && pwd)/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$(cd "$HOME_DIR" && pwd)/bin/perf_analyzer" "\$@"
WRAP
chmod +x "$VENV/bin/perf_analyzer"
touch "$stamp"
