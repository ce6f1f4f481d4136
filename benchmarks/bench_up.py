"""`kubemind up`'s gateway: what nginx adds to a request, and the cold start from zero.

Runs `kubemind up` of a one-service overlay (the `simple` predictor) and drives the same replica
straight and through the gateway with the stock clients (benchmarks/load_client.py, REST and
gRPC, c=1 and c=8, alternating rounds), then `up` with minReplicas 0 for the time from the first
request to its answer: `simple`, and the LLM (the base `llm-chat` on SmolLM2 registered in a
fresh registry, CPU flags of the local overlay) with a cold node cache (the storage initializer
downloads it) and a warm one (a second `up` on the same cache). Goal (issue 14): at most 0.3 ms
added to p50.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

BENCHMARKS_DIR = Path(__file__).resolve().parent
REPO = BENCHMARKS_DIR.parent
LOAD_CLIENT_SCRIPT = BENCHMARKS_DIR / "load_client.py"
CONCURRENCIES = (1, 8)
ROUNDS = 3
SECONDS_PER_MEASUREMENT = 2.0
WARMUP_SECONDS = 0.3
GOAL_ADDED_P50_MS = 0.3
SIMPLE_BODY = {"inputs": [{"name": n, "datatype": "INT32", "shape": [1, 16], "data": list(range(16))}
                          for n in ("INPUT0", "INPUT1")]}


def write_overlay(folder: Path, min_replicas: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": ["simple.yaml"],
        "images": [{"name": "kubemind/core", "newName": "registry.kubemind.dev/kubemind/core", "newTag": "0.1.0"}],
    }))
    (folder / "simple.yaml").write_text(yaml.safe_dump({
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "simple", "namespace": "default"},
        "spec": {"predictor": {"minReplicas": min_replicas, "containers": [{
            "name": "kserve-container", "image": "kubemind/core",
            "args": ["kubemind_predictors.simple", "--model_name=simple", "--log_requests=false"]}]}},
    }))
    return folder


class RunningUp:
    def __init__(self, overlay: Path, home: Path):
        self.home = home
        self.log = home / "up.out"
        home.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kubemind.cli", "up", str(overlay), "--http_port", "0", "--grpc_port", "0"],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "KUBEMIND_HOME": str(home)})

    def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                state = json.loads((self.home / "up" / "state.json").read_text())
                if state["ready"]:
                    return state
            except (OSError, ValueError, KeyError):
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"kubemind up not ready:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(60)


def load(protocol: str, targets: dict[str, str]) -> list[dict[str, Any]]:
    command = [sys.executable, str(LOAD_CLIENT_SCRIPT), "--protocol", protocol,
               *[arg for name, address in targets.items() for arg in ("--target", f"{name}={address}")],
               "--concurrency", *map(str, CONCURRENCIES), "--rounds", str(ROUNDS),
               "--seconds", str(SECONDS_PER_MEASUREMENT), "--warmup", str(WARMUP_SECONDS)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"load client ({protocol}) failed: {completed.stderr[-3000:]}")
    return [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]


def overhead(workdir: Path) -> None:
    up = RunningUp(write_overlay(workdir / "one", 1), workdir / "home-one")
    try:
        state = up.wait_ready()
        http_port, grpc_port = state["services"][0]["components"][0]["revisions"][0]["ports"][0]
        gateway = state["gateway"]
        rows: list[dict[str, Any]] = []
        rows += load("rest", {"direct": f"127.0.0.1:{http_port}",
                              "gateway": f"127.0.0.1:{gateway['http_port']}/serving/default/simple"})
        rows += load("grpc", {"direct": f"127.0.0.1:{grpc_port}", "gateway": f"127.0.0.1:{gateway['grpc_port']}"})
    finally:
        up.stop()
    print(f"\nmedian of {ROUNDS} alternating rounds, {SECONDS_PER_MEASUREMENT:g} s each, {os.cpu_count()} CPUs shared")
    print(f"{'protocol':<6} {'conc':>4}  {'direct p50':>10} {'gateway p50':>11} {'added p50':>9}"
          f" {'direct p99':>10} {'gateway p99':>11}  goal (<= {GOAL_ADDED_P50_MS} ms)")
    for protocol in ("rest", "grpc"):
        for concurrency in CONCURRENCIES:
            scenario = [r for r in rows if r["protocol"] == protocol and r["concurrency"] == concurrency]
            p50 = {t: statistics.median(r["p50_ms"] for r in scenario if r["target"] == t) for t in ("direct", "gateway")}
            p99 = {t: statistics.median(r["p99_ms"] for r in scenario if r["target"] == t) for t in ("direct", "gateway")}
            added = p50["gateway"] - p50["direct"]
            errors = sum(r["errors"] for r in scenario)
            print(f"{protocol:<6} {concurrency:>4}  {p50['direct']:>10.2f} {p50['gateway']:>11.2f} {added:>9.2f}"
                  f" {p99['direct']:>10.2f} {p99['gateway']:>11.2f}"
                  f"  {'met' if added <= GOAL_ADDED_P50_MS else 'MISSED'}{f'  errors {errors}' if errors else ''}")


def first_answer_seconds(overlay: Path, home: Path, path: str, body: dict[str, Any], timeout: float) -> float:
    """`up` of a minReplicas 0 overlay, then the seconds from the first request (REST, through
    the gateway) to its answer; `up` is stopped after. Runs on the embedded registry of `home`."""
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        up = RunningUp(overlay, home)
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    try:
        gateway = up.wait_ready()["gateway"]
        started = time.monotonic()
        answer = httpx.post(f"http://127.0.0.1:{gateway['http_port']}{path}", json=body, timeout=timeout)
        seconds = time.monotonic() - started
        answer.raise_for_status()
        return seconds
    finally:
        up.stop()


def cold_start(workdir: Path) -> None:
    seconds = first_answer_seconds(write_overlay(workdir / "zero", 0), workdir / "home-zero",
                                   "/serving/default/simple/v2/models/simple/infer", SIMPLE_BODY, 120)
    print(f"\ncold start of `simple` from zero replicas to the first answer through the gateway: {seconds:.2f} s")


def write_llm_overlay(folder: Path) -> Path:
    """The repository's runtimes and its base `llm-chat`, on version 1 of smollm2-chat with the
    local overlay's CPU args (what `kubemind models demo` and overlays/local give it)."""
    folder.mkdir(parents=True, exist_ok=True)
    llm = yaml.safe_load((REPO / "inferenceservices" / "base" / "llm-chat" / "inferenceservice.yaml").read_text())
    cpu = yaml.safe_load((REPO / "inferenceservices" / "overlays" / "local" / "llm-chat-cpu.yaml").read_text())
    llm["spec"]["predictor"]["model"]["storageUri"] = "models:/smollm2-chat/1"
    llm["spec"]["predictor"]["model"]["args"] = cpu["spec"]["predictor"]["model"]["args"]
    (folder / "llm-chat.yaml").write_text(yaml.safe_dump(llm))
    (folder / "namespace.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                                            "metadata": {"name": "kubemind"}}))
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": ["namespace.yaml", os.path.relpath(REPO / "inferenceservices" / "base" / "runtimes", folder),
                      "llm-chat.yaml"],
        "images": yaml.safe_load((REPO / "inferenceservices" / "overlays" / "local" / "kustomization.yaml").read_text())["images"],
    }))
    return folder


def llm_cold_start(workdir: Path) -> None:
    """From the first chat request to its answer, with the node cache cold, then warm."""
    from kubemind_predictors.vllm.convert import default_smollm2_dir

    home = workdir / "home-llm"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"KUBEMIND_HOME": str(home)}
    registered = subprocess.run([sys.executable, "-m", "kubemind.cli", "models", "register", "smollm2-chat",
                                 str(default_smollm2_dir()), "--flavor", "hf-llm"],
                                capture_output=True, text=True, env=env, timeout=600, check=False)
    if registered.returncode != 0:
        raise RuntimeError(f"registering smollm2-chat failed: {registered.stderr[-2000:]}")
    overlay = write_llm_overlay(workdir / "llm")
    body = {"model": "smollm2", "max_tokens": 8, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}
    for cache in ("cold", "warm"):
        seconds = first_answer_seconds(overlay, home, "/serving/kubemind/llm-chat/openai/v1/chat/completions",
                                       body, 900)
        print(f"cold start of `llm-chat` (SmolLM2-135M on vLLM, CPU) from zero replicas to the first answer,"
              f" {cache} node cache: {seconds:.1f} s")


def main() -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-up-") as workdir:
        overhead(Path(workdir))
        cold_start(Path(workdir))
        llm_cold_start(Path(workdir))
    print(f"\nbench_up took {time.monotonic() - started:.0f} s (everything stopped)")


if __name__ == "__main__":
    main()
