"""The only module that imports MLflow (design principle 3).

`MlflowRegistry` is the small surface kubemind needs from MLflow: log a model folder as a run's
artifacts, create versions and aliases, look versions up, and download single artifact files.
MLflow's exceptions are translated here into kubemind errors, so callers never see an MLflow
traceback: a server that is down becomes `RegistryUnavailable`, a missing name, version or alias
becomes `ModelVersionNotFound`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.request_utils import augmented_raise_for_status
from mlflow.utils.rest_utils import http_request

from kubemind.progress import ByteProgress
from kubemind_registry.errors import DownloadStalled, ModelVersionNotFound, RegistryUnavailable
from kubemind_registry.settings import RegistrySettings
from kubemind_registry.uris import ModelUri

T = TypeVar("T")

_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}
# A download must bring at least this much per stall window (RegistrySettings.stall_timeout_seconds).
STALL_MIN_BYTES = 64 * 1024


@dataclass(frozen=True)
class VersionInfo:
    """A registered model version, in plain Python types (no MLflow entities leak out)."""

    name: str
    version: str
    source: str
    run_id: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


class MlflowRegistry:
    def __init__(self, settings: RegistrySettings):
        self.settings = settings
        self.tracking_uri = settings.effective_tracking_uri
        # MLflow reads its HTTP retry policy from the environment at request time; only fill
        # in what the user has not set, so an explicit MLFLOW_* variable still wins.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.http_retries))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(settings.http_timeout_seconds))
        # `kubemind models ...` prints JSON on stdout; MLflow's "View run at" line would break it.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        # One progress bar per file would bury the initializer's own one-line report.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        if settings.local_artifact_root is not None:
            settings.home.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    # -- error translation --------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except MlflowException as exc:
            message = _first_line(exc.message)
            # MLflow answers an unknown alias with INVALID_PARAMETER_VALUE: its text says "not found".
            if exc.error_code in _NOT_FOUND_CODES or "not found" in message.lower():
                raise ModelVersionNotFound(f"{what}: {message}") from None
            raise RegistryUnavailable(
                f"{what}: the MLflow registry at {self.tracking_uri} failed: {message}"
            ) from None
        except requests.HTTPError as exc:  # the server answered: keep what it said
            status = exc.response.status_code if exc.response is not None else 0
            text = _server_text(exc.response)
            if status == 404:
                raise ModelVersionNotFound(f"{what}: not found in the artifact store ({text})") from None
            raise RegistryUnavailable(
                f"{what}: the MLflow server at {self.tracking_uri} answered {status}: {text}"
            ) from None
        except requests.RequestException as exc:  # no answer at all (requests' errors are OSErrors)
            raise RegistryUnavailable(
                f"{what}: cannot reach the MLflow registry at {self.tracking_uri}: {exc}"
            ) from None
        # Any other OSError is local (a full disk, an unwritable DEST): the caller's to report.

    # -- registration ---------------------------------------------------------------------------
    def _experiment_id(self) -> str:
        name = self.settings.experiment
        experiment = self._call("look up experiment", lambda: self.client.get_experiment_by_name(name))
        if experiment is not None:
            return str(experiment.experiment_id)
        root = self.settings.local_artifact_root
        # Embedded store: MLflow's default artifact root is ./mlruns relative to the current
        # directory; keep artifacts under KUBEMIND_HOME instead.
        location = root.as_uri() if root is not None else None
        created: str = self._call(
            "create experiment",
            lambda: self.client.create_experiment(name, artifact_location=location),
        )
        return created

    def log_model_folder(
        self, model_dir: Path, extra_files: dict[str, bytes], run_name: str, tags: dict[str, str]
    ) -> tuple[str, str]:
        """Log `model_dir` (plus `extra_files`) under `model/` of a new run.

        Returns (run_id, source URI of the `model/` folder)."""
        experiment_id = self._experiment_id()
        run = self._call(
            "create run",
            lambda: self.client.create_run(experiment_id, tags=tags, run_name=run_name),
        )
        run_id = run.info.run_id
        try:
            self._upload_folder(model_dir, run.info.artifact_uri)
            with tempfile.TemporaryDirectory() as tmp:
                for name, content in extra_files.items():
                    extra = Path(tmp) / name
                    extra.write_bytes(content)
                    self._call(
                        f"upload {name}",
                        functools.partial(self.client.log_artifact, run_id, str(extra), "model"),
                    )
        except Exception:
            self._call("mark run failed", lambda: self.client.set_terminated(run_id, "FAILED"))
            raise
        self._call("finish run", lambda: self.client.set_terminated(run_id))
        return run_id, f"{run.info.artifact_uri.rstrip('/')}/model"

    def _upload_folder(self, model_dir: Path, artifact_uri: str) -> None:
        """Upload every file under `model_dir` to `model/`, one file at a time (what MLflow's
        log_artifacts does too) so a progress bar can follow the bytes."""
        repo = self.artifact_repository(artifact_uri)
        files = [
            Path(root) / name
            for root, dirs, names in os.walk(model_dir)
            for name in sorted(names)
        ]
        total = sum(path.stat().st_size for path in files)
        with ByteProgress(total, f"upload {model_dir.name}") as progress:
            for path in files:
                parent = path.parent.relative_to(model_dir).as_posix()
                artifact_path = "model" if parent == "." else posixpath.join("model", parent)
                self._call(
                    f"upload {path}",
                    functools.partial(repo.log_artifact, str(path), artifact_path),
                )
                progress.add(path.stat().st_size)

    def create_version(self, name: str, source: str, run_id: str, tags: dict[str, str]) -> str:
        def ensure_model() -> None:
            try:
                self.client.create_registered_model(name)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise

        self._call(f"create registered model {name!r}", ensure_model)
        version = self._call(
            f"create a version of {name!r}",
            lambda: self.client.create_model_version(name, source, run_id=run_id, tags=tags),
        )
        return str(version.version)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._call(
            f"set alias {name}@{alias}",
            lambda: self.client.set_registered_model_alias(name, alias, version),
        )

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._call(
            f"tag {name}/{version} {key}={value}",
            lambda: self.client.set_model_version_tag(name, version, key, value),
        )

    # -- lookup ---------------------------------------------------------------------------------
    def alias_version(self, name: str, alias: str) -> str | None:
        """The version `name@alias` names now; None when the alias or the model does not exist
        (what the audit log records as an alias move's `before`)."""
        try:
            model = self._call(f"look up {name}", lambda: self.client.get_registered_model(name))
        except ModelVersionNotFound:
            return None
        version = (model.aliases or {}).get(alias)
        return str(version) if version is not None else None

    def get_version(self, uri: ModelUri) -> VersionInfo:
        if uri.alias is not None:
            alias = uri.alias
            mv = self._call(
                f"resolve {uri}", lambda: self.client.get_model_version_by_alias(uri.name, alias)
            )
        else:
            version = str(uri.version)
            mv = self._call(
                f"resolve {uri}", lambda: self.client.get_model_version(uri.name, version)
            )
        return VersionInfo(
            name=mv.name,
            version=str(mv.version),
            source=str(mv.source),
            run_id=str(mv.run_id or ""),
            tags={str(k): str(v) for k, v in (mv.tags or {}).items()},
            aliases=tuple(mv.aliases or ()),
        )

    # -- artifacts ------------------------------------------------------------------------------
    def artifact_repository(self, source: str) -> ArtifactRepository:
        """The artifact repository of a version's folder; reuse it for all of its files."""
        return self._call(
            f"open artifacts {source}",
            lambda: get_artifact_repository(source, tracking_uri=self.tracking_uri),
        )

    def download_file(
        self,
        repo: ArtifactRepository,
        artifact_path: str,
        target: Path,
        progress: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> str:
        """Download one file of the version's folder to `target`; returns its sha256.

        Through the server's artifact proxy the file is hashed while it streams in, so it is
        never read back from disk. The caller has already checked that `target` stays inside
        the destination folder. `progress` is called with each chunk's size as it arrives
        (with the whole size at the end for other stores)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(repo, HttpArtifactRepository):
            limits = _Limits(self.settings.download_timeout_seconds, self.settings.stall_timeout_seconds, should_stop)
            return self._call(
                f"download {artifact_path}",
                lambda: _stream_to_file(repo, artifact_path, target, progress, limits),
            )
        # Embedded store (local folder) and other backends: MLflow copies, we hash after.
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".kubemind-dl-") as tmp:
            self._call(
                f"download {artifact_path}",
                lambda: repo.download_artifacts(artifact_path, dst_path=tmp),
            )
            os.replace(Path(tmp) / artifact_path, target)
        if progress is not None:
            progress(target.stat().st_size)
        with open(target, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()

    def read_small_file(self, source: str, artifact_path: str) -> bytes:
        """A small artifact (the manifest), read into memory."""
        repo = self.artifact_repository(source)
        with tempfile.TemporaryDirectory(prefix="kubemind-fetch-") as tmp:
            self.download_file(repo, artifact_path, Path(tmp) / "file")
            return (Path(tmp) / "file").read_bytes()


# 1 MiB, as MLflow's own download: measured faster here than 4 MiB chunks.
STREAM_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class _Limits:
    total_seconds: float
    stall_seconds: float
    should_stop: Callable[[], bool] | None = None


class DownloadCancelled(Exception):
    """The initializer is stopping (SIGTERM): abandon the download."""


def _stream_to_file(
    repo: HttpArtifactRepository,
    artifact_path: str,
    target: Path,
    progress: Callable[[int], None] | None,
    limits: _Limits,
) -> str:
    # Same request HttpArtifactRepository._download_file makes, plus hashing on the way in.
    creds = get_default_host_creds(repo.artifact_uri)
    response = http_request(creds, posixpath.join("/", artifact_path), "GET", stream=True)
    digest = hashlib.sha256()
    started = window_start = time.monotonic()
    window_bytes = 0
    with response:
        augmented_raise_for_status(response)
        with open(target, "xb") as out:  # "x": never follow or overwrite an existing path
            while True:
                # read1 returns whatever has arrived (iter_content waits for a whole chunk,
                # so deadlines could never be checked against a dripping server).
                chunk = response.raw.read1(STREAM_CHUNK_BYTES)
                now = time.monotonic()
                if limits.should_stop is not None and limits.should_stop():
                    raise DownloadCancelled(artifact_path)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)  # releases the GIL: other downloads proceed meanwhile
                if progress is not None:
                    progress(len(chunk))
                window_bytes += len(chunk)
                if window_bytes >= STALL_MIN_BYTES:
                    window_start, window_bytes = now, 0
                elif now - window_start > limits.stall_seconds:
                    raise DownloadStalled(
                        f"download {artifact_path}: stalled, less than {STALL_MIN_BYTES} bytes in"
                        f" {limits.stall_seconds:g} s"
                    )
                if now - started > limits.total_seconds:
                    raise DownloadStalled(
                        f"download {artifact_path}: not finished within {limits.total_seconds:g} s"
                    )
    return digest.hexdigest()


def _server_text(response: requests.Response | None) -> str:
    """What the server said: MLflow's JSON `message`, else the start of the body."""
    if response is None:
        return "no response"
    try:
        payload = response.json()
        if isinstance(payload, dict) and payload.get("message"):
            return _first_line(str(payload["message"]))[:500]
    except ValueError:
        pass
    return _first_line(response.text or response.reason or "")[:500] or f"HTTP {response.status_code}"


def _first_line(message: str) -> str:
    return str(message).strip().splitlines()[0] if str(message).strip() else "unknown error"
