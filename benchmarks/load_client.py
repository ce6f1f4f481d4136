"""Closed-loop load generator for the `simple` model over the Open Inference Protocol.

python benchmarks/load_client.py --protocol rest|grpc --target NAME=HOST:PORT [--target ...]
    [--pid NAME=PID ...] [--concurrency 1 8] [--rounds 3] [--seconds 3] [--warmup 0.3]
    [--model NAME --payload FILE.npz]

Without --payload it sends the `simple` model's INPUT0/INPUT1; with it, the arrays saved in
FILE.npz under `input:NAME` (FP32/INT32/... from their dtype) to --model, checking the answer
against the arrays saved under `output:NAME`.

Prints one JSON object per (round, concurrency, target) measurement on stdout, one per line.
With `--pid NAME=PID` it also says the server's CPU time per request over the measured window
(`server_cpu_ms`: user+sys of PID and its descendants from /proc, the server's background
threads included, this client not): on a shared machine that, not the wall clock, is what the
server itself costs (`cpu_seconds` / `process_tree`, which bench_hotpath uses too).
The targets are measured alternately, in a reversed order every other round, so that a slow
patch on the shared machine falls on both servers rather than on one.

Imports only tritonclient and numpy: `tritonclient.grpc` and `kserve` cannot share a process
(both register the `inference` protobuf package). The same stock client drives every target:
  rest: `tritonclient.http` with the binary tensor extension for inputs and outputs; concurrency is
        that many greenlets over a pool of that many keep-alive connections (the client is gevent-based).
  grpc: `tritonclient.grpc.aio` (raw_input_contents); concurrency is that many asyncio tasks on one channel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODEL_NAME = "simple"
ELEMENTS = 16
FIRST = np.arange(ELEMENTS, dtype=np.int32).reshape(1, ELEMENTS)
SECOND = np.ones((1, ELEMENTS), dtype=np.int32)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> list[int]:
    """`root` and every descendant (Triton's Python-backend stubs are tritonserver's children)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User+sys CPU seconds the processes `pids` have used so far (all their threads)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


@dataclass
class Measurement:
    protocol: str
    target: str
    concurrency: int
    round: int
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    first_error: str
    server_cpu_ms: float | None = None
    """The server's CPU ms per request over the window (None without its --pid)."""


class ServerCpu:
    """The CPU time a target's server process tree uses over a window (`--pid`)."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self._started = 0.0

    def start(self, target: str) -> None:
        if target in self.pids:
            self._started = cpu_seconds(process_tree(self.pids[target]))

    def ms_per_request(self, target: str, requests: int) -> float | None:
        if target not in self.pids:
            return None
        used = cpu_seconds(process_tree(self.pids[target])) - self._started
        return used * 1000 / max(requests, 1)


def summarize(
    protocol: str, target: str, concurrency: int, round_index: int,
    latencies: list[float], errors: list[str], seconds: float, server_cpu_ms: float | None = None,
) -> Measurement:
    if latencies:
        p50, p99 = (float(value) * 1000 for value in np.percentile(latencies, [50, 99]))
    else:
        p50 = p99 = float("nan")
    return Measurement(
        protocol=protocol, target=target, concurrency=concurrency, round=round_index,
        requests=len(latencies), errors=len(errors), seconds=seconds,
        requests_per_second=len(latencies) / seconds, p50_ms=p50, p99_ms=p99,
        first_error=errors[0] if errors else "", server_cpu_ms=server_cpu_ms,
    )


@dataclass
class Payload:
    """One request: the model, its inputs and the outputs a correct answer has."""

    model: str
    inputs: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]

    @classmethod
    def simple(cls) -> Payload:
        return cls(MODEL_NAME, {"INPUT0": FIRST, "INPUT1": SECOND},
                   {"OUTPUT0": FIRST + SECOND, "OUTPUT1": FIRST - SECOND})

    @classmethod
    def load(cls, model: str, path: str) -> Payload:
        with np.load(path) as saved:
            arrays = {key: saved[key] for key in saved.files}
        return cls(
            model,
            {k.removeprefix("input:"): v for k, v in arrays.items() if k.startswith("input:")},
            {k.removeprefix("output:"): v for k, v in arrays.items() if k.startswith("output:")},
        )


def v2_datatype(array: np.ndarray) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return str(np_to_triton_dtype(array.dtype))


def check_outputs(payload: Payload, result: Any, target: str) -> None:
    """A benchmark of a wrong answer (or of an error path) would be meaningless: check once up front."""
    for name, want in payload.expected.items():
        got = result.as_numpy(name)
        if got is None or got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-5):
            raise SystemExit(f"{target}: wrong output {name}: {got!r}")


class RestLoad:
    """tritonclient.http driven by greenlets (its own concurrency model)."""

    def __init__(self, address: str, concurrency: int, payload: Payload):
        import tritonclient.http as httpclient

        self.payload = payload
        self.client = httpclient.InferenceServerClient(
            address, concurrency=concurrency, connection_timeout=30.0, network_timeout=30.0
        )
        self.inputs = []
        for name, array in payload.inputs.items():
            tensor = httpclient.InferInput(name, list(array.shape), v2_datatype(array))
            tensor.set_data_from_numpy(array, binary_data=True)
            self.inputs.append(tensor)
        self.outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in payload.expected]

    def infer(self) -> Any:
        return self.client.infer(self.payload.model, self.inputs, outputs=self.outputs)

    def run(self, concurrency: int, seconds: float) -> tuple[list[float], list[str], float]:
        import gevent

        latencies: list[float] = []
        errors: list[str] = []
        started = time.perf_counter()
        deadline = started + seconds

        def worker() -> None:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    self.infer()
                except Exception as error:  # counted and reported, the run goes on
                    errors.append(repr(error)[:200])
                    continue
                latencies.append(time.perf_counter() - sent)

        gevent.joinall([gevent.spawn(worker) for _ in range(concurrency)])
        return latencies, errors, time.perf_counter() - started

    def close(self) -> None:
        self.client.close()


class GrpcLoad:
    """tritonclient.grpc.aio driven by asyncio tasks."""

    def __init__(self, address: str, payload: Payload):
        import tritonclient.grpc.aio as grpcclient

        self.payload = payload
        self.client = grpcclient.InferenceServerClient(address)
        self.inputs = []
        for name, array in payload.inputs.items():
            tensor = grpcclient.InferInput(name, list(array.shape), v2_datatype(array))
            tensor.set_data_from_numpy(array)
            self.inputs.append(tensor)

    async def infer(self) -> Any:
        return await self.client.infer(self.payload.model, self.inputs)

    async def run(self, concurrency: int, seconds: float) -> tuple[list[float], list[str], float]:
        latencies: list[float] = []
        errors: list[str] = []
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    await self.infer()
                except Exception as error:  # counted and reported, the run goes on
                    errors.append(repr(error)[:200])
                    continue
                latencies.append(time.perf_counter() - sent)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - started

    async def close(self) -> None:
        await self.client.close()


def round_orders(targets: Sequence[tuple[str, str]], rounds: int) -> list[list[tuple[str, str]]]:
    return [list(targets) if index % 2 == 0 else list(reversed(targets)) for index in range(rounds)]


def emit(measurement: Measurement) -> None:
    print(json.dumps(asdict(measurement)), flush=True)


def run_rest(args: argparse.Namespace, targets: list[tuple[str, str]]) -> None:
    loads = {(name, c): RestLoad(address, c, args.payload) for name, address in targets for c in args.concurrency}
    cpu = ServerCpu(dict(args.pid))
    for (name, _), load in loads.items():
        check_outputs(args.payload, load.infer(), name)
    for round_index, order in enumerate(round_orders(targets, args.rounds)):
        for concurrency in args.concurrency:
            for name, _ in order:
                load = loads[(name, concurrency)]
                load.run(concurrency, args.warmup)
                cpu.start(name)
                latencies, errors, seconds = load.run(concurrency, args.seconds)
                cpu_ms = cpu.ms_per_request(name, len(latencies) + len(errors))
                emit(summarize("rest", name, concurrency, round_index, latencies, errors, seconds, cpu_ms))
    for load in loads.values():
        load.close()


async def run_grpc(args: argparse.Namespace, targets: list[tuple[str, str]]) -> None:
    loads = {name: GrpcLoad(address, args.payload) for name, address in targets}
    cpu = ServerCpu(dict(args.pid))
    for name, load in loads.items():
        check_outputs(args.payload, await load.infer(), name)
    for round_index, order in enumerate(round_orders(targets, args.rounds)):
        for concurrency in args.concurrency:
            for name, _ in order:
                await loads[name].run(concurrency, args.warmup)
                cpu.start(name)
                latencies, errors, seconds = await loads[name].run(concurrency, args.seconds)
                cpu_ms = cpu.ms_per_request(name, len(latencies) + len(errors))
                emit(summarize("grpc", name, concurrency, round_index, latencies, errors, seconds, cpu_ms))
    for load in loads.values():
        await load.close()


def parse_target(text: str) -> tuple[str, str]:
    name, separator, address = text.partition("=")
    if not separator or not name or not address:
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT, got {text!r}")
    return name, address


def parse_pid(text: str) -> tuple[str, int]:
    name, separator, pid = text.partition("=")
    if not separator or not name or not pid.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=PID, got {text!r}")
    return name, int(pid)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=["rest", "grpc"], required=True)
    parser.add_argument("--target", type=parse_target, action="append", required=True)
    parser.add_argument("--pid", type=parse_pid, action="append", default=[], help="a target's server process: its CPU per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per measurement")
    parser.add_argument("--warmup", type=float, default=0.3, help="unmeasured time before each measurement")
    parser.add_argument("--model", default=MODEL_NAME, help="model to call with --payload")
    parser.add_argument("--payload", help="npz file of input:NAME and output:NAME arrays (default: simple's)")
    args = parser.parse_args(argv)
    args.payload = Payload.load(args.model, args.payload) if args.payload else Payload.simple()
    runners: dict[str, Callable[[], None]] = {
        "rest": lambda: run_rest(args, args.target),
        "grpc": lambda: asyncio.run(run_grpc(args, args.target)),
    }
    runners[args.protocol]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
