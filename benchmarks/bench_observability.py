"""What observability costs: the `simple` server with tracing on, with the payload logger on,
and with both off, side by side in one run.

Five servers run at once: `off` (defaults: no OTEL_* variables, no log_url), `tracing` (every
request traced, exported over OTLP/HTTP, kubemind's default protocol), `trace-grpc` (the same
over OTLP/gRPC), `sampled` (OTLP/HTTP, a 5 % trace-id ratio sampler: what a busy production
service runs) and `payload` (the payload logger at 100 %, request and response events). The
stock-client load generator (load_client.py) measures them alternately, the order reversed
every other round; the tables show medians over rounds.

Two figures per row:
- req/s, and its ratio to `off` (issue 16's goal: >= 0.95x). Client, servers and receiver share
  this machine's CPUs, so the ratio is kubemind's cost *plus* whatever the receiving end and
  the client take from the server's CPU; the receiver (benchmarks/event_sink.py: an OTLP/HTTP
  and OTLP/gRPC collector and a CloudEvents sink in one process) reads every body and drops it
  unparsed, so that share is as small as it can be.
- CPU ms per request: the server process's own user+sys CPU over the measured window, divided
  by the requests of that window (load_client's --pid; the batch span processor's and the
  payload sender's work included), and its difference to `off`: what kubemind itself adds per
  request, whatever else runs on the machine.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_protocol import (
    PROTOCOL_TITLES,
    READY_TIMEOUT_SECONDS,
    median_by_scenario,
    run_load_client,
)
from kubemind.processes import ServerProcess, free_port, start_server, stop_process, wait_for_health

EVENT_SINK_SCRIPT = Path(__file__).resolve().parent / "event_sink.py"
GOAL = 0.95
CONCURRENCIES = (1, 8)
SERVERS = ("off", "tracing", "trace-grpc", "sampled", "payload")
BATCH_DELAY_MS = "1000"
"""OTEL_BSP_SCHEDULE_DELAY of the traced servers (the SDK's default is 5000): the spans of a
part-filled batch at a window's end are exported a second later, not five (full batches of 512
go at once either way)."""


def start_sink(log_path: Path) -> tuple[subprocess.Popen[bytes], str, int]:
    """The receiver: (process, its HTTP URL, its OTLP/gRPC port)."""
    port, grpc_port = free_port(), free_port()
    with log_path.open("wb") as log:
        command = [sys.executable, str(EVENT_SINK_SCRIPT), str(port), str(grpc_port)]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    wait_for_health(f"{url}health", process, 60, log_path)
    return process, url, grpc_port


def otlp_env(service: str, protocol: str, endpoint: str, **extra: str) -> dict[str, str]:
    return {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": protocol, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_SERVICE_NAME": service, "OTEL_BSP_SCHEDULE_DELAY": BATCH_DELAY_MS, **extra}  # fmt: skip


def print_report(medians: dict[tuple[str, int, str], dict[str, float]], payload_counters: str, received: str) -> None:
    print(f"\n{os.cpu_count()} CPUs shared by five servers, the receiver and the client; CPU ms/req: the server process's own")
    print(f"{'protocol':<12} {'conc':>4}  {'server':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>10} {'errors':>6}")
    for protocol, title in PROTOCOL_TITLES.items():
        for concurrency in CONCURRENCIES:
            for server in SERVERS:
                row = medians[(protocol, concurrency, server)]
                print(f"{title:<12} {concurrency:>4}  {server:<10} {row['rps']:>9.1f} {row['p50']:>8.2f} {row['p99']:>8.2f} "
                      f"{row['cpu_ms']:>10.3f} {int(row['errors']):>6}")
    others = SERVERS[1:]
    print(f"\nthroughput vs off (goal >= {GOAL}x; includes the receiver's and the client's share of the CPUs)")
    print(f"{'protocol':<12} {'conc':>4}  " + " ".join(f"{name:>10}" for name in others))
    for protocol, title in PROTOCOL_TITLES.items():
        for concurrency in CONCURRENCIES:
            off = medians[(protocol, concurrency, "off")]["rps"]
            ratios = [medians[(protocol, concurrency, name)]["rps"] / off if off else float("nan") for name in others]
            verdicts = " ".join("met" if r >= GOAL else "MISSED" for r in ratios)
            print(f"{title:<12} {concurrency:>4}  " + " ".join(f"{r:>9.2f}x" for r in ratios) + f"  {verdicts}")
    print("\nthe server's own extra CPU per request vs off, ms (and as a ratio of off's): what kubemind adds")
    print(f"{'protocol':<12} {'conc':>4}  " + " ".join(f"{name:>17}" for name in others))
    for protocol, title in PROTOCOL_TITLES.items():
        for concurrency in CONCURRENCIES:
            off_cpu = medians[(protocol, concurrency, "off")]["cpu_ms"]
            cells = []
            for name in others:
                extra = medians[(protocol, concurrency, name)]["cpu_ms"] - off_cpu
                cells.append(f"{extra:>+8.3f} ({1 + extra / off_cpu:.2f}x)" if off_cpu else f"{'n/a':>17}")
            print(f"{title:<12} {concurrency:>4}  " + " ".join(f"{cell:>17}" for cell in cells))
    print(f"\npayload logger counters after the run:\n{payload_counters}")
    print(f"received (requests, body bytes by path): {received}")


def _counters(server: ServerProcess) -> str:
    import httpx

    text = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    return "\n".join(line for line in text.splitlines() if line.startswith("kubemind_payload_events_") and "_created" not in line)


def main() -> None:
    import httpx

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-observability-") as workdir, contextlib.ExitStack() as stack:
        folder = Path(workdir)
        sink, sink_url, sink_grpc_port = start_sink(folder / "sink.log")
        stack.callback(stop_process, sink)
        http_endpoint, grpc_endpoint = sink_url.rstrip("/"), f"http://127.0.0.1:{sink_grpc_port}"
        args = ["--model_name", "simple"]  # defaults: one access-log line per request on all of them
        common: dict[str, Any] = {"ready_timeout": READY_TIMEOUT_SECONDS}
        servers = {
            "off": start_server("kubemind_predictors.simple", args, folder / "off.log", **common),
            "tracing": start_server("kubemind_predictors.simple", args, folder / "tracing.log",
                                    env=otlp_env("simple-traced", "http/protobuf", http_endpoint), **common),
            "trace-grpc": start_server("kubemind_predictors.simple", args, folder / "trace-grpc.log",
                                       env=otlp_env("simple-traced-grpc", "grpc", grpc_endpoint), **common),
            "sampled": start_server("kubemind_predictors.simple", args, folder / "sampled.log",
                                    env=otlp_env("simple-sampled", "http/protobuf", http_endpoint,
                                                 OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0.05"), **common),
            "payload": start_server("kubemind_predictors.simple", [*args, "--log_url", sink_url, "--log_mode", "all"],
                                    folder / "payload.log", **common),
        }  # fmt: skip
        for server in servers.values():
            stack.callback(server.stop)
        print(f"servers ready after {time.monotonic() - started:.0f} s", flush=True)
        measurements: list[dict[str, Any]] = []
        for protocol in PROTOCOL_TITLES:
            measurements += run_load_client(protocol, servers)
        time.sleep(float(BATCH_DELAY_MS) / 1000 + 0.5)  # the last spans exported
        received = httpx.get(f"{sink_url}stats", timeout=10).text
        print_report(median_by_scenario(measurements), _counters(servers["payload"]), received)
    print(f"\nbench_observability took {time.monotonic() - started:.0f} s (servers stopped)")


if __name__ == "__main__":
    main()
