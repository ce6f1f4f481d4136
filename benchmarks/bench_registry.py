"""Registry benchmark: the models:/ storage initializer against a plain file copy, and alias
resolution latency, measured side by side in one run against a real `mlflow server`.

- throughput ratio = copy time / initializer time for the same model folder on the same disk
  (the copy reads the server's artifact store directly; the initializer resolves the alias,
  fetches and checks the manifest, streams every file through the server's artifact proxy,
  hashes it and renames the folder into place). Goal: >= 0.8x.
- alias resolution p50: `resolve(models:/NAME@ALIAS)` (one registry call plus tag parsing)
  next to MLflow's bare `get_model_version_by_alias`.
"""

from __future__ import annotations

import functools
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

MODEL_BYTES = 256 * 1024 * 1024
REPEATS = 5
RESOLVE_CALLS = 200


def _build_model_folder(folder: Path) -> None:
    """An LLM-shaped folder: two large weight shards plus small config files."""
    folder.mkdir(parents=True)
    chunk = os.urandom(8 * 1024 * 1024)
    for shard in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        with open(folder / shard, "wb") as out:
            for _ in range(MODEL_BYTES // 2 // len(chunk)):
                out.write(chunk)
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}\n')
    (folder / "tokenizer.json").write_text('{"model": {"type": "BPE"}}\n' * 1000)


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    # The baseline "download without kubemind" is MLflow's own, hence the import here.
    import mlflow
    import mlflow.artifacts

    from kubemind.processes import free_port
    from kubemind_registry.initializer import initialize
    from kubemind_registry.mlflow_store import MlflowRegistry
    from kubemind_registry.register import register_model
    from kubemind_registry.resolve import resolve
    from kubemind_registry.settings import RegistrySettings
    from kubemind_registry.uris import ModelUri
    from tests.component.registry_fixtures import MlflowServer

    work = Path(tempfile.mkdtemp(prefix="kubemind-bench-registry-"))
    server = MlflowServer(root=work / "server", port=free_port())
    try:
        server.start()
        settings = RegistrySettings(tracking_uri=server.url, home=work / "home")
        registry = MlflowRegistry(settings)
        _build_model_folder(work / "model")
        ref = register_model(registry, "bench-llm", work / "model", "hf-llm", alias="champion")
        # models:/ URIs are resolved against MLflow's global registry URI, not tracking_uri=.
        mlflow.set_tracking_uri(server.url)
        mlflow.set_registry_uri(server.url)
        stored = server.artifacts_dir / ref.source.removeprefix("mlflow-artifacts:/")

        copy_times: list[float] = []
        init_times: list[float] = []
        mlflow_times: list[float] = []
        for round_ in range(REPEATS):
            copy_dest, init_dest, mlflow_dest = (
                work / f"{kind}-{round_}" for kind in ("copy", "init", "mlflow")
            )
            copy_times.append(_timed(functools.partial(shutil.copytree, stored, copy_dest)))
            init_times.append(
                _timed(functools.partial(initialize, registry, "models:/bench-llm@champion", init_dest))
            )
            mlflow_dest.mkdir()
            mlflow_times.append(
                _timed(
                    functools.partial(
                        mlflow.artifacts.download_artifacts,
                        artifact_uri="models:/bench-llm@champion",
                        dst_path=str(mlflow_dest),
                    )
                )
            )
            for dest in (copy_dest, init_dest, mlflow_dest):
                shutil.rmtree(dest)
        # Embedded store (file:// artifacts on this disk): no HTTP, so this isolates the cost of
        # verification (hashing every byte) on top of the copy.
        embedded = MlflowRegistry(RegistrySettings(tracking_uri=None, home=work / "embedded"))
        register_model(embedded, "bench-llm", work / "model", "hf-llm", alias="champion")
        embedded_times = []
        for round_ in range(REPEATS):
            dest = work / f"embedded-{round_}"
            embedded_times.append(
                _timed(functools.partial(initialize, embedded, "models:/bench-llm@champion", dest))
            )
            shutil.rmtree(dest)
        cached_dest = work / "cached"
        initialize(registry, "models:/bench-llm@champion", cached_dest)
        cached_times = [
            _timed(lambda: initialize(registry, "models:/bench-llm@champion", cached_dest))
            for _ in range(REPEATS)
        ]

        alias = ModelUri("bench-llm", alias="champion")
        bare_ms, resolve_ms = [], []
        for _ in range(RESOLVE_CALLS):
            bare_ms.append(1000 * _timed(lambda: registry.get_version(alias)))
            resolve_ms.append(1000 * _timed(lambda: resolve(registry, alias)))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    mib = ref_bytes = (MODEL_BYTES + 40_000) / (1024 * 1024)
    copy_s, init_s = statistics.median(copy_times), statistics.median(init_times)
    print(f"model: {mib:.0f} MiB in 4 files; medians of {REPEATS} rounds, interleaved")
    print(f"  plain copy (shutil.copytree)      {copy_s:7.3f} s  {ref_bytes / copy_s:8.0f} MiB/s")
    print(f"  initializer (download+verify)     {init_s:7.3f} s  {ref_bytes / init_s:8.0f} MiB/s")
    mlflow_s = statistics.median(mlflow_times)
    print(f"  mlflow.artifacts.download_artifacts {mlflow_s:7.3f} s  {ref_bytes / mlflow_s:8.0f} MiB/s  (no verification)")
    print(f"  throughput ratio initializer/copy   {copy_s / init_s:7.2f}x   (goal >= 0.80x)")
    print(f"  throughput ratio initializer/mlflow {mlflow_s / init_s:7.2f}x")
    embedded_s = statistics.median(embedded_times)
    print(f"  initializer, embedded file:// store {embedded_s:7.3f} s  {ref_bytes / embedded_s:8.0f} MiB/s"
          f"  ratio/copy {copy_s / embedded_s:.2f}x")
    print(f"  initializer, warm cache (no I/O)  {statistics.median(cached_times):7.3f} s")
    print(f"alias resolution, {RESOLVE_CALLS} calls")
    print(f"  MLflow get_model_version_by_alias p50 {statistics.median(bare_ms):6.2f} ms")
    print(f"  kubemind resolve(models:/NAME@ALIAS) p50 {statistics.median(resolve_ms):6.2f} ms")


if __name__ == "__main__":
    main()
