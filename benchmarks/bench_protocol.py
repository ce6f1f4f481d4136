"""kubemind's `simple` server vs a plain KServe `ModelServer` serving the same model, side by side.

Both servers run at once as child processes; one load-client process per protocol
(`benchmarks/load_client.py`, stock `tritonclient`, no kserve import) measures them alternately:
ROUNDS rounds of (concurrency 1, 8) x (kubemind, KServe), the target order reversed every other round,
and the table shows the median over rounds. Closed loop, batch [1, 16] INT32:
  REST: `tritonclient.http` with the binary tensor data extension (inputs and outputs);
  gRPC: `tritonclient.grpc.aio` with raw_input_contents.
Goal (issue 2): kubemind >= 0.95x plain KServe throughput. Both servers run on their defaults
(kubemind: one JSON log line per request; KServe: its access log and latency trace lines).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubemind.processes import ServerProcess, free_port, start_server, wait_until_ready

BENCHMARKS_DIR = Path(__file__).resolve().parent
BASELINE_SCRIPT = BENCHMARKS_DIR / "kserve_simple_baseline.py"
LOAD_CLIENT_SCRIPT = BENCHMARKS_DIR / "load_client.py"

MODEL_NAME = "simple"
CONCURRENCIES = (1, 8)
ROUNDS = 5
SECONDS_PER_MEASUREMENT = 2.0
WARMUP_SECONDS = 0.3
THROUGHPUT_GOAL = 0.95
READY_TIMEOUT_SECONDS = 120.0  # a cold `import kserve` takes 10-30 s on a busy 2-core machine
SERVERS = ("kubemind", "kserve")
PROTOCOL_TITLES = {"rest": "REST-binary", "grpc": "gRPC"}


def start_kserve_baseline(log_path: Path) -> ServerProcess:
    """Start the KServe baseline without waiting for it, so both servers boot at the same time."""
    # KServe binds 0.0.0.0 whatever we say; pick ports free on every interface.
    http_port, grpc_port = free_port("0.0.0.0"), free_port("0.0.0.0")
    command = [
        sys.executable, str(BASELINE_SCRIPT), "--model_name", MODEL_NAME,
        "--http_port", str(http_port), "--grpc_port", str(grpc_port),
    ]
    log = log_path.open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    return ServerProcess(process, http_port, grpc_port, log_path)


def log_tail(server: ServerProcess, lines: int = 20) -> str:
    return "\n".join(server.log().splitlines()[-lines:])


def run_load_client(protocol: str, servers: dict[str, ServerProcess]) -> list[dict[str, Any]]:
    targets: list[str] = []
    for name, server in servers.items():
        port = server.http_port if protocol == "rest" else server.grpc_port
        targets += ["--target", f"{name}=127.0.0.1:{port}", "--pid", f"{name}={server.pid}"]
    command = [
        sys.executable, str(LOAD_CLIENT_SCRIPT), "--protocol", protocol, *targets,
        "--concurrency", *map(str, CONCURRENCIES), "--rounds", str(ROUNDS),
        "--seconds", str(SECONDS_PER_MEASUREMENT), "--warmup", str(WARMUP_SECONDS),
    ]
    expected_seconds = ROUNDS * len(CONCURRENCIES) * len(servers) * (SECONDS_PER_MEASUREMENT + WARMUP_SECONDS)
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=expected_seconds * 3 + 60, check=False
    )
    if completed.returncode != 0:
        tails = "\n".join(f"--- {name} log ---\n{log_tail(server)}" for name, server in servers.items())
        raise RuntimeError(f"load client ({protocol}) failed: {completed.stderr[-3000:]}\n{tails}")
    return [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]


def median_by_scenario(measurements: list[dict[str, Any]]) -> dict[tuple[str, int, str], dict[str, float]]:
    grouped: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for measurement in measurements:
        key = (measurement["protocol"], measurement["concurrency"], measurement["target"])
        grouped.setdefault(key, []).append(measurement)
    return {
        key: {
            "rps": statistics.median(m["requests_per_second"] for m in rounds),
            "p50": statistics.median(m["p50_ms"] for m in rounds),
            "p99": statistics.median(m["p99_ms"] for m in rounds),
            "errors": float(sum(m["errors"] for m in rounds)),
            # The server's own CPU ms per request (load_client's --pid); NaN when not measured.
            "cpu_ms": statistics.median(m.get("server_cpu_ms") or float("nan") for m in rounds),
        }
        for key, rounds in grouped.items()
    }


def print_report(medians: dict[tuple[str, int, str], dict[str, float]], first_errors: list[str]) -> None:
    print(
        f"\nmedian of {ROUNDS} alternating rounds, {SECONDS_PER_MEASUREMENT:g} s each, "
        f"batch [1,16] INT32, {os.cpu_count()} CPUs shared by servers and client"
    )
    print(f"{'protocol':<12} {'conc':>4}  {'server':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for protocol, title in PROTOCOL_TITLES.items():
        for concurrency in CONCURRENCIES:
            for server in SERVERS:
                row = medians[(protocol, concurrency, server)]
                print(
                    f"{title:<12} {concurrency:>4}  {server:<9} {row['rps']:>9.1f} "
                    f"{row['p50']:>8.2f} {row['p99']:>8.2f} {int(row['errors']):>6}"
                )
    print(f"\nkubemind/KServe (goal: throughput >= {THROUGHPUT_GOAL}x; p50 below 1.00x is faster)")
    print(f"{'protocol':<12} {'conc':>4}  {'throughput':>10} {'p50':>7}  goal")
    for protocol, title in PROTOCOL_TITLES.items():
        for concurrency in CONCURRENCIES:
            ours, theirs = medians[(protocol, concurrency, "kubemind")], medians[(protocol, concurrency, "kserve")]
            throughput_ratio = ours["rps"] / theirs["rps"] if theirs["rps"] else float("nan")
            p50_ratio = ours["p50"] / theirs["p50"] if theirs["p50"] else float("nan")
            verdict = "met" if throughput_ratio >= THROUGHPUT_GOAL else "MISSED"
            print(f"{title:<12} {concurrency:>4}  {throughput_ratio:>9.2f}x {p50_ratio:>6.2f}x  {verdict}")
    for error in first_errors:
        print(f"error seen: {error}")


def main() -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-protocol-") as workdir, contextlib.ExitStack() as stack:
        kserve_server = start_kserve_baseline(Path(workdir) / "kserve.log")
        # Registered first, so the callbacks stop it last; each stop is by PID and runs on error too.
        stack.callback(kserve_server.stop, 15.0)
        kubemind_server = start_server(
            "kubemind_predictors.simple", ["--model_name", MODEL_NAME], Path(workdir) / "kubemind.log",
            ready_timeout=READY_TIMEOUT_SECONDS,
        )
        stack.callback(kubemind_server.stop)
        wait_until_ready(
            kserve_server.http_url, kserve_server.process, READY_TIMEOUT_SECONDS, kserve_server.log_path
        )
        print(
            f"servers ready after {time.monotonic() - started:.0f} s: "
            f"kubemind pid {kubemind_server.pid}, KServe pid {kserve_server.pid}",
            flush=True,
        )
        servers = {"kubemind": kubemind_server, "kserve": kserve_server}
        measurements: list[dict[str, Any]] = []
        for protocol in PROTOCOL_TITLES:
            measurements += run_load_client(protocol, servers)
        first_errors = [
            f"{m['protocol']} c={m['concurrency']} {m['target']}: {m['first_error']}"
            for m in measurements
            if m["first_error"]
        ]
        print_report(median_by_scenario(measurements), first_errors)
    print(f"\nbench_protocol took {time.monotonic() - started:.0f} s (servers stopped)")


if __name__ == "__main__":
    main()
