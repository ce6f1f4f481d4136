"""The node cache: where registered models are initialized on this machine.

`kubemind serve --model` and `kubemind up` both put a `models:/` URI here with the registry's
storage initializer (what the InferenceService's init container runs on a cluster), one folder
per name and version, so a second run downloads nothing (LocalModelCache semantics).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def node_cache(home: Path, name: str, version: str) -> Path:
    """Where a version is initialized on this machine: one folder per name and version."""
    return home / "models" / name / version


def initialize_into_cache(uri: str, cache_dir: Path | None, prefix: str = "") -> tuple[Path, Any]:
    """Resolve `uri`, initialize it into the node cache and return (folder, served model).

    Raises the registry's KubemindError subclasses (unknown model, integrity) and OSError."""
    # Imported here: commands that serve no registered model must not need MLflow.
    from kubemind_registry.initializer import initialize
    from kubemind_registry.mlflow_store import MlflowRegistry
    from kubemind_registry.resolve import resolve
    from kubemind_registry.served import read_served_model
    from kubemind_registry.settings import RegistrySettings

    settings = RegistrySettings()
    registry = MlflowRegistry(settings)
    ref = resolve(registry, uri)
    dest = node_cache(cache_dir or settings.home, ref.name, ref.version)
    result = initialize(registry, ref.uri, dest)
    if result.cached:
        print(f"{prefix}{uri} -> {ref.uri}: already in {dest}; nothing downloaded", flush=True)
    else:
        print(f"{prefix}{uri} -> {ref.uri}: {result.downloaded_files} files, {result.downloaded_bytes} bytes"
              f" verified into {dest} in {result.seconds:.1f}s", flush=True)
    return dest, read_served_model(dest)
