"""Direct to Triton vs through TritonPredictor vs through image transformer + predictor, the
transformer handing the pixels over on the gRPC wire and through shared memory
(--predictor_shared_memory, same host).

One 224x224 image per request, concurrency 1 and 8, all three measured in one run with the same
async gRPC client (KServe's v2 stubs), so the ratios compare hops, not clients. Goals (issue 3):
the predictor keeps >= 0.9x of direct-to-Triton throughput; the transformer hop adds <= 2 ms p50.

Everything shares this machine's cores (Triton, predictor, transformer and the load generator),
so absolute numbers are pessimistic; the ratios are the point.
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from kubemind.oip_client import OIPClient, RetryPolicy, Tensor
from kubemind.processes import running_server
from kubemind_predictors.triton.launcher import TritonInstall, TritonServerProcess
from kubemind_predictors.triton.repository import build_repository
from kubemind_transformers.image.preprocessing import ImagePreprocessor
from kubemind_transformers.image.settings import ImageTransformerSettings

MODEL = "efficientnet_lite0"
CONCURRENCIES = (1, 8)
SECONDS = float(os.environ.get("KUBEMIND_BENCH_SECONDS", "6"))
WARMUP_SECONDS = 1.0
ROUNDS = 8


@dataclass
class Result:
    target: str
    concurrency: int
    latencies: list[float]
    elapsed: float

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.elapsed

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000)


def sample_jpeg() -> bytes:
    """A real photo (scikit-image's coffee) centre-cropped to 224x224, as a JPEG."""
    import skimage.data

    image = Image.fromarray(skimage.data.coffee())
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((224, 224))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


async def measure(concurrency: int, calls: dict[str, Callable[[], Awaitable[object]]]) -> list[Result]:
    """Run each target for SECONDS in total, interleaved in short rounds: other load on the
    machine then hits every target alike instead of whichever happened to run at the time."""
    for call in calls.values():
        warm_until = time.monotonic() + WARMUP_SECONDS / len(calls)
        while time.monotonic() < warm_until:
            await call()
    results = {target: Result(target, concurrency, [], 0.0) for target in calls}
    for _ in range(ROUNDS):
        for target, call in calls.items():
            result = results[target]
            deadline = time.monotonic() + SECONDS / ROUNDS

            async def worker(
                call: Callable[[], Awaitable[object]] = call, result: Result = result, deadline: float = deadline
            ) -> None:
                while time.monotonic() < deadline:
                    started = time.perf_counter()
                    await call()
                    result.latencies.append(time.perf_counter() - started)

            started = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            result.elapsed += time.monotonic() - started
    return list(results.values())


async def run_benchmark(triton_url: str, predictor_url: str, transformer_url: str, shm_transformer_url: str) -> list[Result]:
    jpeg = sample_jpeg()
    preprocessor = ImagePreprocessor(ImageTransformerSettings())
    tensor = preprocessor.new_batch(1)
    preprocessor.prepare_encoded(0, jpeg, tensor[0])
    policy = RetryPolicy(timeout=30.0, retry_budget=0, backoff=0.0, cooldown=0.0)
    clients = {name: OIPClient(url, policy) for name, url in (
        ("direct to Triton", triton_url),
        ("TritonPredictor", predictor_url),
        ("transformer + predictor", transformer_url),
        ("transformer (shm) + pred.", shm_transformer_url),
    )}  # fmt: skip
    for client in clients.values():
        client.connect()
    image_tensor = Tensor("input", "UINT8", tensor)
    jpeg_tensor = Tensor("image", "BYTES", np.array([jpeg], dtype=np.object_))
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "direct to Triton": lambda: clients["direct to Triton"].infer(MODEL, [image_tensor]),
        "TritonPredictor": lambda: clients["TritonPredictor"].infer(MODEL, [image_tensor]),
        "transformer + predictor": lambda: clients["transformer + predictor"].infer(MODEL, [jpeg_tensor]),
        "transformer (shm) + pred.": lambda: clients["transformer (shm) + pred."].infer(MODEL, [jpeg_tensor]),
    }
    results = []
    for concurrency in CONCURRENCIES:
        results += await measure(concurrency, calls)
    for client in clients.values():
        await client.close()
    return results


def report(results: list[Result]) -> None:
    print(f"{'target':<26}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for r in results:
        print(f"{r.target:<26}{r.concurrency:>5}{r.throughput:>9.1f}{r.percentile(50):>9.2f}{r.percentile(99):>9.2f}")
    by_key = {(r.target, r.concurrency): r for r in results}
    for concurrency in CONCURRENCIES:
        direct = by_key[("direct to Triton", concurrency)]
        predictor = by_key[("TritonPredictor", concurrency)]
        transformer = by_key[("transformer + predictor", concurrency)]
        shm = by_key[("transformer (shm) + pred.", concurrency)]
        print(
            f"concurrency {concurrency}: predictor/direct throughput {predictor.throughput / direct.throughput:.2f}x "
            f"(goal >= 0.90x); transformer hop adds {transformer.percentile(50) - predictor.percentile(50):+.2f} ms p50 "
            f"(goal <= 2 ms at concurrency 1); predictor hop adds {predictor.percentile(50) - direct.percentile(50):+.2f} ms p50"
        )
        print(
            f"  transformer hop through shared memory adds {shm.percentile(50) - predictor.percentile(50):+.2f} ms p50"
            f" (wire {transformer.percentile(50) - predictor.percentile(50):+.2f} ms); shm/wire throughput"
            f" {shm.throughput / transformer.throughput:.2f}x"
        )


def main() -> None:
    install = TritonInstall.default()
    if not install.binary.is_file():
        print(f"skipped: Triton is not installed under {install.home} (run `make install`)")
        return
    workdir = Path(tempfile.mkdtemp(prefix="kubemind-bench-triton-"))
    with ExitStack() as stack:
        repository = build_repository(workdir / "repository", [MODEL], install.onnx_dir, intra_op_threads=1)
        triton = stack.enter_context(TritonServerProcess(repository, [MODEL], install=install))
        predictor = stack.enter_context(running_server(
            "kubemind_predictors.triton",
            ["--models", MODEL, "--triton_grpc_port", str(triton.grpc_port),
             "--triton_http_port", str(triton.http_port), "--triton_metrics_port", str(triton.metrics_port),
             "--log_requests", "false"],
            workdir / "predictor.log",
        ))  # fmt: skip
        transformer, shm_transformer = (stack.enter_context(running_server(
            "kubemind_transformers.image",
            ["--model_name", MODEL, "--predictor_host", predictor.grpc_address, "--log_requests", "false",
             "--predictor_shared_memory", str(shared).lower()],
            workdir / f"transformer-shm-{shared}.log",
        )) for shared in (False, True))  # fmt: skip
        results = asyncio.run(run_benchmark(
            triton.grpc_url, predictor.grpc_address, transformer.grpc_address, shm_transformer.grpc_address
        ))
    report(results)


if __name__ == "__main__":
    main()
