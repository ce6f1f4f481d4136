"""Router overhead: a graph through `kubemind_transformers.router` vs the client calling the same
steps itself, over v2 gRPC with the core OIP client, closed loop at concurrency 1 and 8.

The steps are `simple` predictors (separate processes: INT32 [1, 16] add/subtract), so what is
measured is the router, not a model:
  chain:    a Sequence of three steps answering at once, each fed the previous step's OUTPUT0 by
            an adapter (the demo's classify -> describe hand-over); direct: the client makes the
            three calls in turn, feeding OUTPUT0 on itself. Overhead per step = (router p50 -
            direct p50) / 3. Goal (issue 13): <= 1 ms per step at c=1 and c=8.
  ensemble: an Ensemble of three steps that take 10, 15 and 20 ms (`--delay_seconds`, a model
            that waits without using the CPU); direct: the three calls at once (asyncio.gather),
            i.e. the slowest step. Goal: router p50 / direct p50 <= 1.1.
Rounds alternate which side runs first; the table shows medians over rounds.

On these 2 cores the router competes for CPU with the step servers and the load client: at c=8
the chain's overhead is mostly that contention (the router spends ~0.5 ms of CPU per step).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from kubemind.backend import Tensor
from kubemind.oip_client import OIPClient, RetryPolicy
from kubemind.processes import ServerProcess, running_server

CONCURRENCIES = (1, 8)
ROUNDS = int(os.environ.get("KUBEMIND_BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("KUBEMIND_BENCH_SECONDS", "2"))
WARMUP_SECONDS = 0.3
SERVICES = ("step-a", "step-b", "step-c")
ENSEMBLE_DELAYS = (0.010, 0.015, 0.020)
PER_STEP_GOAL_MS = 1.0
ENSEMBLE_GOAL = 1.1
STEPS = "kubemind.io/router-steps"


def graphs() -> list[dict[str, Any]]:
    """`chain` over the step-* services, `ensemble` over the slow-* ones."""

    def options(name: str, first: bool) -> dict[str, Any]:
        source = 'request.inputs.#(name=="INPUT0")' if first else 'response.outputs.#(name=="OUTPUT0")'
        return {"model": "simple", "inputs": {"INPUT0": source, "INPUT1": 'request.inputs.#(name=="INPUT1")'}}

    def graph(name: str, router_type: str, chained: bool) -> dict[str, Any]:
        steps = [{"name": s, "serviceName": s if chained else f"slow-{s}", "dependency": "Hard",
                  **({"data": "$response"} if chained and i else {})}
                 for i, s in enumerate(SERVICES)]  # fmt: skip
        step_options = {s: options(s, first=not chained or i == 0) for i, s in enumerate(SERVICES)}
        return {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "InferenceGraph",
            "metadata": {"name": name, "annotations": {STEPS: yaml.safe_dump(step_options)}},
            "spec": {"nodes": {"root": {"routerType": router_type, "steps": steps}}},
        }

    return [graph("chain", "Sequence", chained=True), graph("ensemble", "Ensemble", chained=False)]


def request() -> list[Tensor]:
    values = np.arange(16, dtype=np.int32).reshape(1, 16)
    return [Tensor("INPUT0", "INT32", values), Tensor("INPUT1", "INT32", np.ones((1, 16), dtype=np.int32))]


async def closed_loop(call: Callable[[], Awaitable[Any]], concurrency: int, seconds: float) -> list[float]:
    latencies: list[float] = []

    async def worker(until: float, record: bool) -> None:
        while time.perf_counter() < until:
            started = time.perf_counter()
            await call()
            if record:
                latencies.append(time.perf_counter() - started)

    warm = time.perf_counter() + WARMUP_SECONDS
    await asyncio.gather(*(worker(warm, False) for _ in range(concurrency)))
    until = time.perf_counter() + seconds
    await asyncio.gather(*(worker(until, True) for _ in range(concurrency)))
    return latencies


async def measure(
    router: ServerProcess, steps: list[ServerProcess], slow_steps: list[ServerProcess]
) -> dict[tuple[str, str, int], list[float]]:
    policy = RetryPolicy(timeout=30.0, retry_budget=0, backoff=0.05, cooldown=0.5)
    router_client = OIPClient(router.grpc_address, policy)
    step_clients = [OIPClient(step.grpc_address, policy) for step in steps]
    slow_clients = [OIPClient(step.grpc_address, policy) for step in slow_steps]
    for client in (router_client, *step_clients, *slow_clients):
        client.connect()
    inputs = request()

    async def direct_chain() -> None:
        fed = inputs
        for client in step_clients:
            outputs = await client.infer("simple", fed)
            fed = [Tensor("INPUT0", "INT32", outputs[0].array), inputs[1]]

    async def direct_ensemble() -> None:
        await asyncio.gather(*(client.infer("simple", inputs) for client in slow_clients))

    async def via_router(graph: str) -> None:
        await router_client.infer(graph, inputs)

    cases: dict[tuple[str, str], Callable[[], Awaitable[Any]]] = {
        ("chain", "direct"): direct_chain,
        ("chain", "router"): lambda: via_router("chain"),
        ("ensemble", "direct"): direct_ensemble,
        ("ensemble", "router"): lambda: via_router("ensemble"),
    }
    p50s: dict[tuple[str, str, int], list[float]] = {}
    try:
        for round_index in range(ROUNDS):
            for concurrency in CONCURRENCIES:
                for graph in ("chain", "ensemble"):
                    sides = ("direct", "router") if round_index % 2 == 0 else ("router", "direct")
                    for side in sides:
                        latencies = await closed_loop(cases[(graph, side)], concurrency, SECONDS)
                        p50s.setdefault((graph, side, concurrency), []).append(statistics.median(latencies) * 1000)
    finally:
        for client in (router_client, *step_clients, *slow_clients):
            await client.close()
    return p50s


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-router-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        def simple(name: str, delay: float) -> ServerProcess:
            args = ["--model_name", "simple", "--log_requests", "false", "--delay_seconds", str(delay)]
            return stack.enter_context(running_server("kubemind_predictors.simple", args, workdir / f"{name}.log"))

        steps = [simple(name, 0.0) for name in SERVICES]
        slow_steps = [simple(f"slow-{name}", delay) for name, delay in zip(SERVICES, ENSEMBLE_DELAYS, strict=True)]
        graph_file = workdir / "graphs.yaml"
        graph_file.write_text(yaml.safe_dump_all(graphs()))
        hosts = ",".join(
            [f"{name}={step.grpc_address}" for name, step in zip(SERVICES, steps, strict=True)]
            + [f"slow-{name}={step.grpc_address}" for name, step in zip(SERVICES, slow_steps, strict=True)]
        )
        router = stack.enter_context(
            running_server("kubemind_transformers.router", ["--graph", str(graph_file), "--service_hosts", hosts, "--log_requests", "false"], workdir / "router.log")
        )
        p50s = asyncio.run(measure(router, steps, slow_steps))
    delays = "/".join(f"{d * 1000:g}" for d in ENSEMBLE_DELAYS)
    print(f"p50 latency in ms, median over {ROUNDS} rounds of {SECONDS:g} s; `simple` steps over v2 gRPC"
          f" (chain: immediate, ensemble: {delays} ms)")
    print(f"{'graph':<10}{'c':>3}{'direct':>10}{'router':>10}   result")
    for concurrency in CONCURRENCIES:
        for graph in ("chain", "ensemble"):
            direct = statistics.median(p50s[(graph, "direct", concurrency)])
            routed = statistics.median(p50s[(graph, "router", concurrency)])
            if graph == "chain":
                per_step = (routed - direct) / len(SERVICES)
                verdict = f"overhead {per_step:.3f} ms/step (goal <= {PER_STEP_GOAL_MS:g}): {'ok' if per_step <= PER_STEP_GOAL_MS else 'MISSED'}"
            else:
                ratio = routed / direct
                verdict = (
                    f"router/slowest-step {ratio:.2f}x, +{routed - direct:.3f} ms "
                    f"(goal <= {ENSEMBLE_GOAL:g}x): {'ok' if ratio <= ENSEMBLE_GOAL else 'MISSED'}"
                )
            print(f"{graph:<10}{concurrency:>3}{direct:>10.3f}{routed:>10.3f}   {verdict}", flush=True)


if __name__ == "__main__":
    main()
