"""Feast: the feature repository's store, `apply`/`materialize`, and online lookups. The only
kubemind module that imports feast (features/definitions.py is Feast's own repository format).

The repository is `features/`: one set of definitions (definitions.py) and a feature_store.yaml
per place it runs. features/feature_store.yaml (the default) keeps the registry and a SQLite
online store in features/data; features/cluster/feature_store.yaml has a Postgres registry and a
Redis online store, named by environment variables that Feast expands (`${VAR}`). Flags may
override the config's online store (`redis://host:port[/db]`, tests), registry file and project.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import os
import re
import sys
from collections.abc import Iterator
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


def _online_store(spec: str) -> dict[str, Any]:
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


DEFAULT_CONFIG = "feature_store.yaml"
"""The repository's own config (SQLite); features/cluster/feature_store.yaml is the cluster's."""
_UNSET_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@contextlib.contextmanager
def _reaching(store: Any) -> Iterator[None]:
    """A registry or online store that cannot be reached (a Job's usual failure on a cluster) is
    FeastUnavailable naming it, not a traceback; other errors pass through."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.exc import OperationalError

    try:
        yield
    except (OperationalError, RedisConnectionError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise FeastUnavailable(f"Feast's registry ({store.config.registry.registry_type}) or online store "
                               f"({store.config.online_store.type}) cannot be reached: {type(exc).__name__}: {first}") from None


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return [value] if isinstance(value, str) else []


@dataclass(frozen=True)
class FeatureRepo:
    """The repository folder, the feature_store.yaml it is used with, and overrides of that
    config (a project per test keeps keys in a shared Redis apart)."""

    path: Path
    online_store: str = ""
    """Overrides the config's online store: sqlite:///PATH or redis://HOST:PORT[/DB]."""
    project: str = ""
    """Overrides the config's project."""
    registry: str = ""
    """Overrides the config's registry with this file."""
    config: str = ""
    """The feature_store.yaml; empty: the repository's own (DEFAULT_CONFIG). Definitions and the
    offline sources' relative paths are the repository folder's whichever config is used."""

    def config_path(self) -> Path:
        return Path(self.config) if self.config else self.path / DEFAULT_CONFIG

    def repo_config(self) -> Any:
        """The config as Feast loads it (`${VAR}` expanded from the environment), with the
        overrides. A variable that is not set is an error naming it, not a registry or online
        store Feast would try to reach at a literal `${VAR}`."""
        import yaml
        from feast.repo_config import RepoConfig
        from pydantic import ValidationError

        path = self.config_path()
        try:
            text = os.path.expandvars(path.read_text())
        except OSError as exc:
            raise InvalidSettings(f"Feast config {path} cannot be read: {exc.strerror or exc}") from None
        raw = yaml.safe_load(text)
        if not isinstance(raw, dict):
            raise InvalidSettings(f"Feast config {path} is not a mapping")
        unset = sorted(set(_UNSET_VARIABLE.findall(" ".join(_strings(raw)))))  # in values, not comments
        if unset:
            raise InvalidSettings(f"Feast config {path} needs {', '.join(unset)} in the environment (not set)")
        if self.project:
            raw["project"] = self.project
        if self.online_store:
            raw["online_store"] = _online_store(self.online_store)
        if self.registry:
            raw["registry"] = self.registry
        try:
            return RepoConfig(**raw, repo_path=self.path)
        except ValidationError as exc:
            raise InvalidSettings(f"Feast config {path}: {exc}") from None

    def describe(self) -> tuple[str, str, str]:
        """(project, registry, online store) for people: a registry URL without its password."""
        config = self.repo_config()
        registry = config.registry
        if registry.registry_type == "sql":
            from sqlalchemy.engine import make_url

            where = f"sql {make_url(registry.path).render_as_string(hide_password=True)}"
        else:
            where = str(self._registry_file(config))
        online = config.online_store
        store = str(online.type)
        if store == "redis":
            store += f" {str(online.connection_string).split(',')[0]}"  # host:port, not the password
        elif store == "sqlite":
            store += f" {self.path / str(online.path)}"
        return str(config.project), where, store

    def _registry_file(self, config: Any) -> Path | None:
        """A file registry's path (relative paths are the repository's), None for another kind."""
        registry = config.registry
        if registry.registry_type != "file" or "://" in registry.path:
            return None
        return self.path / registry.path  # an absolute path stays itself

    def store(self) -> Any:
        _no_telemetry()
        from feast import FeatureStore

        config = self.repo_config()
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

    def ensure_sources(self) -> list[Path]:
        """The parquet offline sources, written with generate.py when one is missing (the image
        carries them: its root file system may be read-only). Returns the files written."""
        if all((self.path / "data" / name).is_file() for name in ("users.parquet", "documents.parquet")):
            return []
        return self.generate_sources()

    def apply(self) -> list[str]:
        """`feast apply`: register the entities and feature views (the sources written first
        when missing). Idempotent: applying the same definitions again changes nothing that
        is served (the online rows stay). Returns the names applied."""
        self.ensure_sources()
        store = self.store()
        registry_file = self._registry_file(store.config)
        if registry_file is not None:
            registry_file.parent.mkdir(parents=True, exist_ok=True)
        objects = self.definitions()
        with _reaching(store):
            store.apply(objects)
        return sorted(str(o.name) for o in objects)

    def materialize(self, end: dt.datetime | None = None) -> None:
        """`feast materialize-incremental`: copy the offline rows up to `end` into the online store
        (the sources written first when missing)."""
        self.ensure_sources()
        with _reaching(store := self.store()):
            store.materialize_incremental(end_date=end or dt.datetime.now(dt.UTC))


@dataclass
class FeatureLookup:
    """One request's features: the user's (defaults when unknown) and each document's."""

    user: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_USER))
    user_known: bool = False
    quality: dict[str, float] = field(default_factory=dict)
    available: bool = True
    reason: str = ""


class OnlineFeatures:
    """Online lookups for one request; blocking (Feast's SDK is synchronous): run in an executor.

    A mistake in the config (a variable not set) fails here, at the start; Feast reaches its
    registry and online store at the first lookup, so a Postgres or Redis that is down is a
    lookup without features until it is back (tests/component/test_feast_cluster.py)."""

    def __init__(self, repo: FeatureRepo):
        self.repo = repo
        self._store = repo.store()
        self.store_name = str(self._store.config.online_store.type)

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
        except Exception as exc:  # Redis or Postgres down, a missing registry, SQLite locked: Feast raises many kinds
            raise FeastUnavailable(f"Feast online store ({self.store_name}) cannot be read: "
                                   f"{type(exc).__name__}: {exc}") from None  # fmt: skip
        return result


__all__ = ["DEFAULT_USER", "FeastUnavailable", "FeatureLookup", "FeatureRepo", "OnlineFeatures", "repository_root"]
