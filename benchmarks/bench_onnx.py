"""The ONNX predictor vs ONNX Runtime called directly in-process, on the same model.

EfficientNet-Lite0 (one 224x224x3 UINT8 image per request; the ONNX file `make install` exports),
or a small MLP built here when that file is missing. Concurrency 1 and 8, closed loop:
  direct:          ONNX Runtime `session.run` in this process, from that many threads;
  onnx predictor:  `python -m kubemind_predictors.onnx` over REST (binary tensors) and gRPC, driven
                   by the stock tritonclient in `benchmarks/load_client.py`;
  triton predictor: the same model behind `kubemind_predictors.triton` + tritonserver (its Python
                   backend runs ONNX Runtime), when Triton is installed.
Same ONNX Runtime settings everywhere: one intra-op thread per execution and two executions at
once (the predictor's --instances 2, Triton's two model instances; direct: the threads share
the two cores). Rounds alternate which side runs first; the table shows medians over rounds.
Goal (issue 9): the predictor keeps >= 0.9x of direct throughput.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from kubemind.processes import ServerProcess, running_server

BENCHMARKS_DIR = Path(__file__).resolve().parent
LOAD_CLIENT_SCRIPT = BENCHMARKS_DIR / "load_client.py"
CONCURRENCIES = (1, 8)
ROUNDS = int(os.environ.get("KUBEMIND_BENCH_ROUNDS", "4"))
SECONDS = float(os.environ.get("KUBEMIND_BENCH_SECONDS", "2"))
WARMUP_SECONDS = 0.3
INSTANCES = 2
THROUGHPUT_GOAL = 0.9
PROTOCOLS = ("rest", "grpc")


def build_mlp(folder: Path) -> Path:
    """A 512 -> 1024 -> 1000 MLP with a dynamic batch: enough compute that serving overhead shows
    as a fraction, not as the whole cost."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((512, 1024)).astype("float32") / 20, "W1")
    w2 = numpy_helper.from_array(rng.standard_normal((1024, 1000)).astype("float32") / 30, "W2")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "W2"], ["logits"])],
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 512])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])],
        initializer=[w1, w2],
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def prepare_model(workdir: Path) -> tuple[str, Path, np.ndarray]:
    from kubemind_predictors.triton.launcher import TritonInstall

    folder = workdir / "model"
    folder.mkdir(parents=True)
    exported = TritonInstall.default().onnx_dir / "efficientnet_lite0.onnx"
    rng = np.random.default_rng(1)
    if exported.is_file():
        shutil.copyfile(exported, folder / "efficientnet_lite0.onnx")
        return "efficientnet_lite0", folder / "efficientnet_lite0.onnx", rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    return "mlp", build_mlp(folder), rng.standard_normal((1, 512)).astype(np.float32)


def new_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def direct_round(session: Any, feeds: dict[str, np.ndarray], concurrency: int, round_index: int) -> dict[str, Any]:
    """ONNX Runtime in-process from `concurrency` threads (it releases the GIL while it runs)."""
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(deadline: float) -> None:
        mine = []
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            session.run(None, feeds)
            mine.append(time.perf_counter() - sent)
        with lock:
            latencies.extend(mine)

    for seconds in (WARMUP_SECONDS, SECONDS):  # the first pass warms up; the second is kept
        latencies.clear()
        started = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(started + seconds,)) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    return {
        "protocol": "in-process", "target": "direct", "concurrency": concurrency, "round": round_index,
        "requests_per_second": len(latencies) / elapsed, "errors": 0,
        "p50_ms": float(np.percentile(latencies, 50) * 1000),
    }


def load_round(protocol: str, targets: dict[str, ServerProcess], model: str, payload: Path,
               round_index: int) -> list[dict[str, Any]]:
    arguments: list[str] = []
    for name, server in targets.items():
        arguments += ["--target", f"{name}=127.0.0.1:{server.http_port if protocol == 'rest' else server.grpc_port}"]
    command = [
        sys.executable, str(LOAD_CLIENT_SCRIPT), "--protocol", protocol, *arguments,
        "--concurrency", *map(str, CONCURRENCIES), "--rounds", "1", "--seconds", str(SECONDS),
        "--warmup", str(WARMUP_SECONDS), "--model", model, "--payload", str(payload),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"load client ({protocol}) failed: {completed.stderr[-3000:]}")
    rows = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    for row in rows:
        row["round"] = round_index
        if row["errors"]:
            raise RuntimeError(f"{row['target']} ({protocol}): {row['errors']} errors: {row['first_error']}")
    return rows


def start_triton_predictor(stack: ExitStack, model: str, workdir: Path) -> ServerProcess | None:
    from kubemind_predictors.triton.launcher import TritonInstall, TritonServerProcess
    from kubemind_predictors.triton.repository import build_repository

    install = TritonInstall.default()
    if model != "efficientnet_lite0" or not install.binary.is_file():
        print("triton predictor: skipped (Triton or the exported model is not installed)")
        return None
    repository = build_repository(workdir / "repository", [model], install.onnx_dir, intra_op_threads=1)
    config = repository / model / "config.pbtxt"
    config.write_text(config.read_text().replace("count: 1", f"count: {INSTANCES}"))
    triton = stack.enter_context(TritonServerProcess(repository, [model], install=install))
    return stack.enter_context(running_server(
        "kubemind_predictors.triton",
        ["--models", model, "--triton_grpc_port", str(triton.grpc_port), "--triton_http_port", str(triton.http_port),
         "--triton_metrics_port", str(triton.metrics_port), "--log_requests", "false"],
        workdir / "triton-predictor.log", ready_timeout=180,
    ))  # fmt: skip


def report(rows: list[dict[str, Any]]) -> None:
    grouped: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row["target"], row["protocol"], row["concurrency"]), []).append(row)
    medians = {
        key: (statistics.median(r["requests_per_second"] for r in group), statistics.median(r["p50_ms"] for r in group))
        for key, group in grouped.items()
    }
    print(f"{'target':<18}{'protocol':<12}{'conc':>5}{'req/s':>10}{'p50 ms':>9}   (medians of {ROUNDS} rounds)")
    for (target, protocol, concurrency), (rps, p50) in sorted(medians.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
        print(f"{target:<18}{protocol:<12}{concurrency:>5}{rps:>10.1f}{p50:>9.2f}")
    for concurrency in CONCURRENCIES:
        direct = medians[("direct", "in-process", concurrency)][0]
        for protocol in PROTOCOLS:
            predictor = medians[("onnx-predictor", protocol, concurrency)][0]
            line = (f"concurrency {concurrency} {protocol:<5}: onnx predictor / direct ONNX Runtime "
                    f"{predictor / direct:.2f}x (goal >= {THROUGHPUT_GOAL:.2f}x)")
            triton = medians.get(("triton-predictor", protocol, concurrency))
            if triton:
                line += f"; onnx predictor / triton predictor {predictor / triton[0]:.2f}x"
            print(line)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="kubemind-bench-onnx-"))
    try:
        model, path, sample = prepare_model(workdir)
        input_name = "input"
        session = new_session(path)
        feeds = {input_name: sample}
        expected = session.run(None, feeds)[0]
        payload = workdir / "payload.npz"
        np.savez(payload, **{f"input:{input_name}": sample, "output:logits": expected})
        print(f"model {model}: one {list(sample.shape)} {sample.dtype} request; {ROUNDS} rounds of {SECONDS:.1f} s per measurement")
        rows: list[dict[str, Any]] = []
        with ExitStack() as stack:
            targets = {"onnx-predictor": stack.enter_context(running_server(
                "kubemind_predictors.onnx",
                ["--model_name", model, "--model_dir", str(path.parent), "--max_batch_size", "8",
                 "--instances", str(INSTANCES), "--intra_op_threads", "1", "--log_requests", "false"],
                workdir / "onnx-predictor.log",
            ))}  # fmt: skip
            triton = start_triton_predictor(stack, model, workdir)
            if triton is not None:
                targets["triton-predictor"] = triton
            for round_index in range(ROUNDS):
                direct_first = round_index % 2 == 1
                if direct_first:
                    rows += [direct_round(session, feeds, c, round_index) for c in CONCURRENCIES]
                for protocol in PROTOCOLS:
                    rows += load_round(protocol, targets, model, payload, round_index)
                if not direct_first:
                    rows += [direct_round(session, feeds, c, round_index) for c in CONCURRENCIES]
        report(rows)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
