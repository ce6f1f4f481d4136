"""System shared memory vs gRPC raw contents on the `simple` model, 1 MiB and 16 MiB per input.

One kubemind `simple` server; one stock `tritonclient.grpc` driver process
(`benchmarks/shared_memory_client.py`) sends the same inference both ways, alternating rounds:
raw puts both inputs and both outputs on the wire; shared memory sends only the region names
and the server reads and writes the client's regions. The table shows the median infer/s over
rounds and the shm/raw ratio (expected well above 1 for large tensors).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from kubemind.processes import running_server

DRIVER = Path(__file__).resolve().parent / "shared_memory_client.py"
ELEMENTS = 16
SIZES_MIB = (1, 16)
ROUNDS = 5
SECONDS_PER_MEASUREMENT = 1.5


def main() -> None:
    rows = [size * 1024 * 1024 // (ELEMENTS * 4) for size in SIZES_MIB]
    with tempfile.TemporaryDirectory(prefix="kubemind-bench-shm-") as tmp:
        args = ["--model_name", "simple", "--max_batch_size", str(max(rows)), "--log_requests", "false"]
        with running_server("kubemind_predictors.simple", args, Path(tmp) / "simple.log") as server:
            completed = subprocess.run(
                [sys.executable, str(DRIVER), server.grpc_address, str(ROUNDS), str(SECONDS_PER_MEASUREMENT), *map(str, rows)],
                capture_output=True, text=True, timeout=600, check=False,
            )
    if completed.returncode != 0:
        raise SystemExit(f"shared-memory driver failed:\n{completed.stderr[-3000:]}")
    results = json.loads(completed.stdout)
    print(f"simple, INT32 [rows, 16] x 2 inputs, {ROUNDS} alternating rounds of {SECONDS_PER_MEASUREMENT} s, median infer/s")
    print(f"{'per input':>10} {'gRPC raw':>10} {'shm':>10} {'shm/raw':>8}")
    for size, row_count in zip(SIZES_MIB, rows, strict=True):
        measured = results[str(row_count)]
        raw, shared = statistics.median(measured["raw"]), statistics.median(measured["shm"])
        print(f"{size:>7} MiB {raw:>10.1f} {shared:>10.1f} {shared / raw:>7.2f}x")


if __name__ == "__main__":
    main()
