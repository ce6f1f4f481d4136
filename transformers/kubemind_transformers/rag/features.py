"""Feast: the feature repository's store, `apply`/`materialize`, and online lookups. The only
kubemind module that imports feast (features/definitions.py is Feast's own repository format).

The repository is `features/`; its online store is SQLite by default or a Redis given as
`redis://host:port[/db]` (tests, a cluster). The registry stays a file in the repository (or
wherever `registry` points), so the transformer reads feature definitions without a server.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubemind.errors import BackendUnavailable, InvalidSettings

PROJECT = "kubemind"
USER_FEATURES = ("expertise_level", "preferred_answer_length", "tenant")
DOCUMENT_FEATURES = ("quality_score", "last_updated")
DEFAULT_USER = {"expertise_level": "intermediate", "preferred_answer_length": 80, "tenant": "default"}
"""An unknown user (or none) gets these."""
DEFAULT_QUALITY = 0.5


def _no_telemetry() -> None:
    # Feast reports usage to its makers unless told not to; here that is a network call that
    # hangs until it times out (no outside network), costing minutes per command.
    os.environ.setdefault("FEAST_USAGE", "False")


class FeastUnavailable(BackendUnavailable):
    """Feast's online store cannot be read; the message names Feast and the store."""


def repository_root() -> Path:
    """The checkout's features/ folder (the repository is not part of the wheel)."""
    return Path(__file__).resolve().parents[3] / "features"


def _online_store(spec: str, repo: Path) -> dict[str, Any]:
    if not spec:
        return {"type": "sqlite", "path": str(repo / "data" / "online_store.db")}
    if spec.startswith("sqlite:///"):
        return {"type": "sqlite", "path": spec[len("sqlite:///"):]}
    if spec.startswith(("redis://", "rediss://")):
        url = urlsplit(spec)
        db = url.path.strip("/") or "0"
        options = [f"{url.hostname or '127.0.0.1'}:{url.port or 6379}", f"db={db}"]
        if url.password:
            options.append(f"password={url.password}")
        if url.scheme == "rediss":
            options.append("ssl=true")
        return {"type": "redis", "connection_string": ",".join(options)}
    raise InvalidSettings(f"--feature_online_store: {spec!r} is not sqlite:///PATH or redis://HOST:PORT[/DB]")


@dataclass(frozen=True)
class FeatureRepo:
    """The repository folder, its online store and project (a project per test keeps keys apart)."""

    path: Path
    online_store: str = ""
    project: str = PROJECT
    registry: str = ""
    """Registry file; empty: data/registry.db in the repository (data/registry-PROJECT.db for
    another project)."""

    def registry_path(self) -> Path:
        if self.registry:
            return Path(self.registry)
        name = "registry.db" if self.project == PROJECT else f"registry-{self.project}.db"
        return self.path / "data" / name

    def store(self) -> Any:
        _no_telemetry()
        from feast import FeatureStore
        from feast.repo_config import RepoConfig

        config = RepoConfig(
            project=self.project,
            provider="local",
            registry=str(self.registry_path()),
            online_store=_online_store(self.online_store, self.path),
            offline_store={"type": "file"},
            entity_key_serialization_version=3,
            repo_path=self.path,
        )
        return FeatureStore(repo_path=str(self.path), config=config)

    def definitions(self) -> list[Any]:
        """The Feast objects declared in the repository's definitions.py."""
        path = self.path / "definitions.py"
        spec = importlib.util.spec_from_file_location(f"kubemind_feature_repo_{abs(hash(path))}", path)
        if spec is None or spec.loader is None:
            raise InvalidSettings(f"--feature_repo: {path} is missing")
        module = importlib.util.module_from_spec(spec)
        _no_telemetry()
        spec.loader.exec_module(module)
        from feast import Entity, FeatureView

        return [value for value in vars(module).values() if isinstance(value, Entity | FeatureView)]

    def generate_sources(self) -> list[Path]:
        """Write the parquet offline sources with the repository's generate.py."""
        sys.path.insert(0, str(self.path))
        try:
            spec = importlib.util.spec_from_file_location("kubemind_feature_generate", self.path / "generate.py")
            if spec is None or spec.loader is None:
                raise InvalidSettings(f"--feature_repo: {self.path / 'generate.py'} is missing")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return list(module.write(self.path))
        finally:
            sys.path.remove(str(self.path))

    def apply(self) -> list[str]:
        """`feast apply`: register the entities and feature views (the sources written first
        when missing). Returns the names applied."""
        if not (self.path / "data" / "users.parquet").is_file() or not (self.path / "data" / "documents.parquet").is_file():
            self.generate_sources()
        self.registry_path().parent.mkdir(parents=True, exist_ok=True)
        objects = self.definitions()
        self.store().apply(objects)
        return sorted(str(o.name) for o in objects)

    def materialize(self, end: dt.datetime | None = None) -> None:
        """`feast materialize-incremental`: copy the offline rows up to `end` into the online store."""
        self.store().materialize_incremental(end_date=end or dt.datetime.now(dt.UTC))


@dataclass
class FeatureLookup:
    """One request's features: the user's (defaults when unknown) and each document's."""

    user: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_USER))
    user_known: bool = False
    quality: dict[str, float] = field(default_factory=dict)
    available: bool = True
    reason: str = ""


class OnlineFeatures:
    """Online lookups for one request; blocking (Feast's SDK is synchronous): run in an executor."""

    def __init__(self, repo: FeatureRepo):
        self.repo = repo
        self._store = repo.store()

    def lookup(self, user_id: str | None, sources: list[str]) -> FeatureLookup:
        result = FeatureLookup()
        try:
            if user_id:
                row = self._store.get_online_features(
                    features=[f"user_features:{name}" for name in USER_FEATURES], entity_rows=[{"user_id": user_id}]
                ).to_dict()
                values = {name: row.get(name, [None])[0] for name in USER_FEATURES}
                if any(value is not None for value in values.values()):
                    result.user = {name: DEFAULT_USER[name] if value is None else value for name, value in values.items()}
                    result.user_known = True
            unique = sorted(set(sources))
            if unique:
                rows = self._store.get_online_features(
                    features=["document_features:quality_score"], entity_rows=[{"source": s} for s in unique]
                ).to_dict()
                for source, score in zip(rows["source"], rows["quality_score"], strict=True):
                    result.quality[str(source)] = DEFAULT_QUALITY if score is None else float(score)
        except Exception as exc:  # Redis down, a missing registry, SQLite locked: Feast raises many kinds
            raise FeastUnavailable(f"Feast online store ({self.repo.online_store or 'sqlite'}) cannot be read: "
                                   f"{type(exc).__name__}: {exc}") from None  # fmt: skip
        return result


__all__ = ["DEFAULT_USER", "FeastUnavailable", "FeatureLookup", "FeatureRepo", "OnlineFeatures", "repository_root"]
