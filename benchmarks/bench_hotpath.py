"""The hot path measured with Triton's own load generator, perf_analyzer (issue 17).

Every row is driven by the same perf_analyzer binary (tools/install.d/60-perf-analyzer.sh), over
gRPC unless the row says REST, at concurrency 1 and 8, in one run:

    simple   tritonserver directly (Python-backend `simple`)
    simple   kubemind's TritonPredictor in front of that Triton (gRPC passthrough, and with
             --passthrough false: every request decoded into numpy and encoded again)
    simple   kubemind serving `simple` itself, gRPC and REST
    classifier (EfficientNet-Lite0, UINT8 224x224x3 pixels) directly and through the TritonPredictor
    floor    bare Python gRPC servers (grpc.aio and grpc's thread-pool server) answering `simple`
             with canned replies (benchmarks/grpc_floor_server.py): the transport's own cost
    REST     `simple` and the classifier directly and through the predictor (perf_analyzer sends
             binary tensors: the REST passthrough), and `simple` through the decoding predictor

Besides infer/s and latency, each row gets the CPU time per request of the server processes
(user+sys from /proc over the measurement, Triton's backend stubs included, perf_analyzer not):
on a busy node that cost, not the wall clock, decides throughput. Goals: predictor/direct >= 0.6x
for `simple` and >= 0.95x for the classifier; kubemind gRPC/REST >= 1.0x; kubemind `simple` /
Triton's Python-backend `simple` >= 0.8x at concurrency 1.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from benchmarks.load_client import cpu_seconds, process_tree
from kubemind.processes import ServerProcess, free_port, running_server, stop_process
from kubemind_predictors.triton.launcher import TritonInstall, TritonServerProcess
from kubemind_predictors.triton.repository import build_repository

CONCURRENCIES = (1, 8)
MEASUREMENT_MS = int(float(os.environ.get("KUBEMIND_BENCH_SECONDS", "4")) * 1000)


@dataclass
class Row:
    model: str
    target: str
    protocol: str
    concurrency: int
    infer_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float


def perf_analyzer_binary() -> Path:
    venv = Path(os.environ.get("VENV", ".venv"))
    for candidate in (venv / "bin" / "perf_analyzer", Path(sys.executable).parent / "perf_analyzer"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("perf_analyzer is not installed (make install runs tools/install.d/60-perf-analyzer.sh)")


def run_perf_analyzer(
    binary: Path, url: str, protocol: str, model: str, concurrency: int, server_pids: list[int], workdir: Path
) -> tuple[float, float, float, float]:
    """(infer/s, p50 ms, p99 ms, server CPU ms per request) for one target at one concurrency."""
    report = workdir / f"pa-{os.getpid()}-{model}-{concurrency}.csv"
    command = [
        # Version 1 named explicitly: every target serves it, and the canned floor servers need it.
        str(binary), "-m", model, "-x", "1", "-u", url, "-i", protocol,
        "--concurrency-range", f"{concurrency}:{concurrency}",
        "--measurement-interval", str(MEASUREMENT_MS), "--stability-percentage", "1000",
        "--max-trials", "3", "--percentile", "50", "-f", str(report),
    ]  # fmt: skip
    pids = [pid for root in server_pids for pid in process_tree(root)]
    cpu_before = cpu_seconds(pids)
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    cpu_after = cpu_seconds(pids)
    if completed.returncode != 0:
        raise RuntimeError(f"perf_analyzer failed on {model} at {url}: {completed.stdout[-2000:]}{completed.stderr[-2000:]}")
    with report.open() as handle:
        row = next(csv.DictReader(handle))
    infer_per_s = float(row["Inferences/Second"])
    # The CSV has rates only; the text output's "Request count" is the requests of the measured
    # windows (all three trials: --stability-percentage 1000 accepts the first three).
    requests = sum(int(line.split()[-1]) for line in completed.stdout.splitlines() if "Request count:" in line)
    cpu_ms = (cpu_after - cpu_before) * 1000 / max(requests, 1)
    return infer_per_s, float(row["p50 latency"]) / 1000, float(row["p99 latency"]) / 1000, cpu_ms


@contextmanager
def grpc_floor(copy_from: str, flavor: str, workdir: Path) -> Iterator[tuple[str, int]]:
    """A bare gRPC server with canned replies (benchmarks/grpc_floor_server.py): (address, pid)."""
    port = free_port()
    with (workdir / f"floor-{flavor}.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.grpc_floor_server", "--copy-from", copy_from,
             "--port", str(port), "--flavor", flavor],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        yield address, process.pid
    finally:
        stop_process(process)


def http_address(server: ServerProcess) -> str:
    return server.http_url.removeprefix("http://")


def measure(binary: Path, targets: list[tuple[str, str, str, str, list[int]]], workdir: Path) -> list[Row]:
    rows = []
    for concurrency in CONCURRENCIES:
        for model, target, protocol, url, pids in targets:
            ips, p50, p99, cpu_ms = run_perf_analyzer(binary, url, protocol, model, concurrency, pids, workdir)
            rows.append(Row(model, target, protocol, concurrency, ips, p50, p99, cpu_ms))
    return rows


def report(rows: list[Row]) -> None:
    print(f"{'model':<20}{'target':<22}{'proto':<6}{'conc':>5}{'infer/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}")
    for r in rows:
        print(f"{r.model:<20}{r.target:<22}{r.protocol:<6}{r.concurrency:>5}{r.infer_per_s:>10.1f}"
              f"{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.cpu_ms_per_request:>12.3f}")
    by = {(r.model, r.target, r.protocol, r.concurrency): r for r in rows}

    def ratio(a: tuple[str, str, str], b: tuple[str, str, str], concurrency: int) -> str:
        first, second = by[(*a, concurrency)], by[(*b, concurrency)]
        return (f"{first.infer_per_s / second.infer_per_s:.2f}x infer/s, "
                f"{first.cpu_ms_per_request / max(second.cpu_ms_per_request, 1e-9):.2f}x CPU/req")

    for c in CONCURRENCIES:
        print(f"concurrency {c}:")
        print(f"  simple via TritonPredictor / direct Triton: {ratio(('simple', 'TritonPredictor', 'grpc'), ('simple', 'tritonserver', 'grpc'), c)} (goal >= 0.6x)")
        print(f"  simple, passthrough predictor / decoding predictor: {ratio(('simple', 'TritonPredictor', 'grpc'), ('simple', 'decoding predictor', 'grpc'), c)}")
        print(f"  classifier via TritonPredictor / direct Triton: {ratio(('efficientnet_lite0', 'TritonPredictor', 'grpc'), ('efficientnet_lite0', 'tritonserver', 'grpc'), c)} (goal >= 0.95x)")
        print(f"  simple via TritonPredictor / direct Triton, REST: {ratio(('simple', 'TritonPredictor', 'http'), ('simple', 'tritonserver', 'http'), c)} (goal >= 0.6x)")
        print(f"  simple, REST passthrough predictor / decoding predictor: {ratio(('simple', 'TritonPredictor', 'http'), ('simple', 'decoding predictor', 'http'), c)}")
        print(f"  classifier via TritonPredictor / direct Triton, REST: {ratio(('efficientnet_lite0', 'TritonPredictor', 'http'), ('efficientnet_lite0', 'tritonserver', 'http'), c)} (goal >= 0.95x)")
        print(f"  kubemind simple gRPC / REST: {ratio(('simple', 'kubemind', 'grpc'), ('simple', 'kubemind', 'http'), c)} (goal >= 1.0x)")
        print(f"  kubemind simple gRPC / bare grpc.aio server (canned replies): {ratio(('simple', 'kubemind', 'grpc'), ('simple', 'bare grpc.aio', 'grpc'), c)}")
        print(f"  bare grpc.aio / kubemind simple REST: {ratio(('simple', 'bare grpc.aio', 'grpc'), ('simple', 'kubemind', 'http'), c)} (the gRPC/REST ceiling with grpc.aio)")
        print(f"  bare grpc sync / bare grpc.aio: {ratio(('simple', 'bare grpc sync', 'grpc'), ('simple', 'bare grpc.aio', 'grpc'), c)}")
        print(f"  kubemind simple / tritonserver Python-backend simple (gRPC): {ratio(('simple', 'kubemind', 'grpc'), ('simple', 'tritonserver', 'grpc'), c)} (goal >= 0.8x at c=1)")


def main() -> None:
    install = TritonInstall.default()
    if not install.binary.is_file():
        print(f"skipped: Triton is not installed under {install.home} (run `make install`)")
        return
    try:
        binary = perf_analyzer_binary()
    except FileNotFoundError as exc:
        print(f"skipped: {exc}")
        return
    models = ["simple", "efficientnet_lite0"]
    workdir = Path(tempfile.mkdtemp(prefix="kubemind-bench-hotpath-"))
    with ExitStack() as stack:
        repository = build_repository(workdir / "repository", models, install.onnx_dir, intra_op_threads=1)
        triton = stack.enter_context(TritonServerProcess(repository, models, install=install))
        def predictor_process(passthrough: bool) -> ServerProcess:
            return stack.enter_context(running_server(
                "kubemind_predictors.triton",
                ["--models", ",".join(models), "--triton_grpc_port", str(triton.grpc_port),
                 "--triton_http_port", str(triton.http_port), "--triton_metrics_port", str(triton.metrics_port),
                 "--log_requests", "false", "--passthrough", str(passthrough).lower()],
                workdir / f"predictor-passthrough-{passthrough}.log",
            ))  # fmt: skip

        predictor, decoding = predictor_process(True), predictor_process(False)
        own = stack.enter_context(running_server(
            "kubemind_predictors.simple", ["--log_requests", "false"], workdir / "simple.log",
        ))  # fmt: skip
        floors = {flavor: stack.enter_context(grpc_floor(own.grpc_address, flavor, workdir)) for flavor in ("aio", "sync")}
        triton_pids = [triton.pid] if triton.pid else []
        predictor_pids = [predictor.pid]
        targets = [
            ("simple", "tritonserver", "grpc", triton.grpc_url, triton_pids),
            ("simple", "TritonPredictor", "grpc", predictor.grpc_address, predictor_pids + triton_pids),
            ("simple", "decoding predictor", "grpc", decoding.grpc_address, [decoding.pid, *triton_pids]),
            ("simple", "kubemind", "grpc", own.grpc_address, [own.pid]),
            ("simple", "kubemind", "http", http_address(own), [own.pid]),
            ("simple", "bare grpc.aio", "grpc", floors["aio"][0], [floors["aio"][1]]),
            ("simple", "bare grpc sync", "grpc", floors["sync"][0], [floors["sync"][1]]),
            ("efficientnet_lite0", "tritonserver", "grpc", triton.grpc_url, triton_pids),
            ("efficientnet_lite0", "TritonPredictor", "grpc", predictor.grpc_address, predictor_pids + triton_pids),
            # REST: perf_analyzer sends binary tensors, so the predictor takes its REST passthrough.
            ("simple", "tritonserver", "http", triton.http_url.removeprefix("http://"), triton_pids),
            ("simple", "TritonPredictor", "http", http_address(predictor), predictor_pids + triton_pids),
            ("simple", "decoding predictor", "http", http_address(decoding), [decoding.pid, *triton_pids]),
            ("efficientnet_lite0", "tritonserver", "http", triton.http_url.removeprefix("http://"), triton_pids),
            ("efficientnet_lite0", "TritonPredictor", "http", http_address(predictor), predictor_pids + triton_pids),
        ]
        rows = measure(binary, targets, workdir)
    report(rows)


if __name__ == "__main__":
    main()
