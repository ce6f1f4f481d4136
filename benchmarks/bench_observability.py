"""What observability costs: the `simple` server with tracing on, with the payload logger on,
and with both off, side by side in one run.

Four servers run at once: `off` (defaults: no OTEL_* variables, no log_url), `tracing` (every
request traced, OTLP/gRPC to a real receiver process, tests/otlp_receiver.py) and `payload`
(the payload logger at 100 %, request and response events, to an HTTP sink process that accepts
them: benchmarks/event_sink.py) and `sampled` (tracing with a 5 % trace-id ratio sampler). The stock-client load generator (load_client.py) measures them
alternately, the order reversed every other round; the table shows medians over rounds.
Goal (issue 16): throughput of each >= 0.95x `off`.

The exporter's and the sender's background work runs on the same CPUs as the server measured
next, so on a 2-core machine this measures their whole cost, not only the request path's.
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
from kubemind.processes import ServerProcess, free_port, start_server, wait_for_health
from tests.otlp_receiver import ReceiverProcess

EVENT_SINK_SCRIPT = Path(__file__).resolve().parent / "event_sink.py"
GOAL = 0.95
CONCURRENCIES = (1, 8)
SERVERS = ("off", "tracing", "sampled", "payload")
"""sampled: tracing with OTEL_TRACES_SAMPLER=traceidratio at 5 %, what a busy production service runs."""


def start_sink(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, str(EVENT_SINK_SCRIPT), str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    wait_for_health(f"{url}health", process, 60, log_path)
    return process, url


def print_report(medians: dict[tuple[str, int, str], dict[str, float]], payload_counters: str) -> None:
    print(f"\n{os.cpu_count()} CPUs shared by four servers, the OTLP receiver, the event sink and the client")
    print(f"{'protocol':<12} {'conc':>4}  {'server':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for protocol, title in PROTOCOL_TITLES.items():
        for concurrency in CONCURRENCIES:
            for server in SERVERS:
                row = medians[(protocol, concurrency, server)]
                print(f"{title:<12} {concurrency:>4}  {server:<8} {row['rps']:>9.1f} {row['p50']:>8.2f} {row['p99']:>8.2f} {int(row['errors']):>6}")
    print(f"\nthroughput vs off (goal >= {GOAL}x)")
    print(f"{'protocol':<12} {'conc':>4}  {'tracing':>8} {'sampled':>8} {'payload':>8}")
    for protocol, title in PROTOCOL_TITLES.items():
        for concurrency in CONCURRENCIES:
            off = medians[(protocol, concurrency, "off")]["rps"]
            ratios = [medians[(protocol, concurrency, name)]["rps"] / off if off else float("nan") for name in SERVERS[1:]]
            verdicts = " ".join("met" if r >= GOAL else "MISSED" for r in ratios)
            print(f"{title:<12} {concurrency:>4}  {ratios[0]:>7.2f}x {ratios[1]:>7.2f}x {ratios[2]:>7.2f}x  {verdicts}")
    print(f"\npayload logger counters after the run:\n{payload_counters}")


def _counters(server: ServerProcess) -> str:
    import httpx

    text = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    return "\n".join(line for line in text.splitlines() if line.startswith("kubemind_payload_events_") and "_created" not in line)


def main() -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-observability-") as workdir, contextlib.ExitStack() as stack:
        folder = Path(workdir)
        receiver = ReceiverProcess()
        stack.callback(receiver.stop)
        sink, sink_url = start_sink(folder / "sink.log")
        stack.callback(lambda: (sink.terminate(), sink.wait(10)))
        args = ["--model_name", "simple"]  # defaults: one access-log line per request on all three
        common: dict[str, Any] = {"ready_timeout": READY_TIMEOUT_SECONDS}
        servers = {
            "off": start_server("kubemind_predictors.simple", args, folder / "off.log", **common),
            "tracing": start_server("kubemind_predictors.simple", args, folder / "tracing.log",
                                    env={**receiver.env("simple-traced"), "OTEL_BSP_SCHEDULE_DELAY": "1000"}, **common),
            "sampled": start_server("kubemind_predictors.simple", args, folder / "sampled.log",
                                    env={**receiver.env("simple-sampled"), "OTEL_BSP_SCHEDULE_DELAY": "1000",
                                         "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.05"}, **common),
            "payload": start_server("kubemind_predictors.simple", [*args, "--log_url", sink_url, "--log_mode", "all"],
                                    folder / "payload.log", **common),
        }  # fmt: skip
        for server in servers.values():
            stack.callback(server.stop)
        print(f"servers ready after {time.monotonic() - started:.0f} s", flush=True)
        measurements: list[dict[str, Any]] = []
        for protocol in PROTOCOL_TITLES:
            measurements += run_load_client(protocol, servers)
        spans = len(receiver.spans())
        print_report(median_by_scenario(measurements), _counters(servers["payload"]))
        print(f"spans the receiver got from the traced server: {spans}")
    print(f"\nbench_observability took {time.monotonic() - started:.0f} s (servers stopped)")


if __name__ == "__main__":
    main()
