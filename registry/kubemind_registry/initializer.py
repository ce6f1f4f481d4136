"""Storage initializer for `models:/` URIs, following KServe's contract:

    python -m kubemind_registry.initializer SRC_URI DEST_DIR

so a ClusterStorageContainer with `supportedUriFormats: [{prefix: "models:/"}]` can run it as
the InferenceService's init container (KServe passes the storageUri and /mnt/models).

It resolves SRC_URI to an immutable version, downloads that version's files through the MLflow
server's artifact proxy into a staging folder, checks every file's sha256 against the manifest
(whose digest the registry vouches for), and only then moves the files into DEST_DIR. Nothing is
ever half-written at DEST_DIR: the metadata file `kubemind-model.json` is written last and marks
the folder complete. When DEST_DIR already holds the same digest, nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kubemind.errors import KubemindError
from kubemind.progress import ByteProgress
from kubemind_registry.errors import ArtifactIntegrityError
from kubemind_registry.manifest import (
    MANIFEST_FILE,
    FileEntry,
    Manifest,
    safe_destination,
)
from kubemind_registry.mlflow_store import MlflowRegistry
from kubemind_registry.resolve import ModelRef, read_manifest, resolve
from kubemind_registry.served import (
    METADATA_FILE,
    ServedModel,
    read_served_model,
    write_served_model,
)
from kubemind_registry.settings import RegistrySettings

STAGING_PREFIX = ".kubemind-staging-"
# Parallel downloads: the artifact proxy streams each file on its own connection.
DOWNLOAD_WORKERS = 4


@dataclass(frozen=True)
class InitializeResult:
    ref: ModelRef
    dest: Path
    downloaded_files: int
    downloaded_bytes: int
    seconds: float

    @property
    def cached(self) -> bool:
        return self.downloaded_files == 0


def initialize(registry: MlflowRegistry, src_uri: str, dest: Path) -> InitializeResult:
    started = time.perf_counter()
    ref = resolve(registry, src_uri)
    if _already_initialized(dest, ref):
        return InitializeResult(ref, dest, 0, 0, time.perf_counter() - started)

    manifest = read_manifest(registry, ref)
    if manifest.digest != ref.digest:
        raise ArtifactIntegrityError(
            f"{MANIFEST_FILE} of {ref.uri} does not match the digest the registry recorded"
            f" ({manifest.digest} != {ref.digest}): the artifact store was modified"
        )
    staging = _make_staging(dest)
    stop = threading.Event()
    try:
        # Refuse escaping paths before a single byte is written.
        targets = {entry.path: safe_destination(staging, entry.path) for entry in manifest.files}
        _download_and_verify(registry, ref, manifest, targets, stop)
        write_served_model(staging, _served_model(ref, manifest))
        _commit(staging, dest, ref)
    except BaseException:
        stop.set()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return InitializeResult(
        ref, dest, len(manifest.files), manifest.total_bytes, time.perf_counter() - started
    )


def _already_initialized(dest: Path, ref: ModelRef) -> bool:
    """Same digest and every listed file present with its size: a warm node cache.

    Sizes, not hashes: re-hashing gigabytes on every pod start would undo the point of the
    cache; the hashes were checked when the files were written."""
    if not (dest / METADATA_FILE).is_file():
        return False
    try:
        served = read_served_model(dest)
    except KubemindError:
        return False
    if served.digest != ref.digest:
        return False
    return all((dest / path).is_file() for path in served.files)


def _make_staging(dest: Path) -> Path:
    if dest.exists():
        # DEST is often a volume mount point (/mnt/models), which cannot be renamed over:
        # stage inside it so the final moves stay on one filesystem.
        return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}{STAGING_PREFIX}", dir=dest.parent))
    # mkdtemp makes 0700, and the staging folder becomes DEST: the model server often runs as
    # another user than the init container, so give DEST the mode mkdir would have.
    staging.chmod(0o777 & ~_umask())
    return staging


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _download_and_verify(
    registry: MlflowRegistry,
    ref: ModelRef,
    manifest: Manifest,
    targets: dict[str, Path],
    stop: threading.Event,
) -> None:
    repo = registry.artifact_repository(ref.source)

    def fetch(entry: FileEntry) -> None:
        target = targets[entry.path]
        actual = registry.download_file(repo, entry.path, target, progress.add, stop.is_set)
        if target.is_symlink() or not target.is_file():
            raise ArtifactIntegrityError(f"{entry.path}: not downloaded as a regular file")
        size = target.stat().st_size
        if size != entry.size:
            raise ArtifactIntegrityError(
                f"{entry.path}: size {size} does not match the manifest ({entry.size});"
                f" {ref.uri} was modified after registration"
            )
        if actual != entry.sha256:
            raise ArtifactIntegrityError(
                f"{entry.path}: sha256 {actual} does not match the manifest ({entry.sha256});"
                f" {ref.uri} was modified after registration"
            )

    # Largest files first so the long downloads overlap with the many small ones.
    ordered = sorted(manifest.files, key=lambda e: -e.size)
    with (
        ByteProgress(manifest.total_bytes, f"download {ref.uri}") as progress,
        ThreadPoolExecutor(max_workers=min(DOWNLOAD_WORKERS, len(ordered) or 1)) as pool,
    ):
        futures = [pool.submit(fetch, entry) for entry in ordered]
        try:
            for future in futures:
                future.result()
        except BaseException:
            # One bad file fails the whole model: don't start the downloads still queued, and
            # have the running ones give up at their next chunk.
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _served_model(ref: ModelRef, manifest: Manifest) -> ServedModel:
    return ServedModel(
        name=ref.name,
        version=ref.version,
        run_id=ref.run_id,
        digest=ref.digest,
        flavor=manifest.flavor,
        source_uri=ref.uri,
        signature=manifest.signature,
        files=tuple(entry.path for entry in manifest.files),
    )


def _commit(staging: Path, dest: Path, ref: ModelRef) -> None:
    if staging.parent != dest:
        try:
            os.rename(staging, dest)  # atomic: DEST appears complete or not at all
        except OSError:
            # Another initializer sharing this folder (a node-level cache) finished first.
            if not _already_initialized(dest, ref):
                raise
            shutil.rmtree(staging)
        return
    # Staged inside an existing DEST: drop the old contents (marker first, so a crash in
    # between leaves a folder that reads as "not initialized"), move the new files up, and
    # write the marker last.
    (dest / METADATA_FILE).unlink(missing_ok=True)
    for old in dest.iterdir():
        if old != staging:
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    for new in staging.iterdir():
        if new.name != METADATA_FILE:
            os.rename(new, dest / new.name)
    os.rename(staging / METADATA_FILE, dest / METADATA_FILE)
    staging.rmdir()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kubemind_registry.initializer",
        description="Download a models:/ URI into a folder, verified against its sha256 manifest.",
    )
    parser.add_argument("src_uri", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    parser.add_argument("dest_dir", type=Path, help="folder to create (KServe: /mnt/models)")
    args = parser.parse_args(argv)
    # SIGTERM (the pod deleted mid-download) unwinds like an error, so the staging folder is
    # removed instead of left behind on the node.
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        result = initialize(MlflowRegistry(RegistrySettings()), args.src_uri, args.dest_dir)
    except KubemindError as exc:
        print(f"kubemind-initializer: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, read-only or unwritable DEST: say so, no traceback
        print(f"kubemind-initializer: error: cannot write {args.dest_dir}: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    if result.cached:
        print(
            f"kubemind-initializer: {result.dest} already holds {result.ref.uri}"
            f" ({result.ref.digest}); nothing downloaded",
            file=sys.stderr,
        )
    else:
        print(
            f"kubemind-initializer: {args.src_uri} -> {result.ref.uri} ({result.ref.digest}):"
            f" {result.downloaded_files} files, {result.downloaded_bytes} bytes verified into"
            f" {result.dest} in {result.seconds:.2f}s",
            file=sys.stderr,
        )
    return 0


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
