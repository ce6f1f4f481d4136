"""The cluster's Feast config (features/cluster/feature_store.yaml) against a real Postgres registry
and a real Redis online store: what the feast-apply Job and the feast-materialize CronJob run
(`kubemind features apply|materialize --config ...`), then the RAG transformer's lookups
(OnlineFeatures, as its start() builds them from --feature_repo and --feature_store_yaml).

Postgres and Redis are the machine's when they answer on their usual ports, else started here
(tests/component/jobs_fixtures.py). The registry gets a database of its own; the online rows a
project of their own (--project), so the keys in a shared Redis stay apart."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from kubemind_transformers.rag.features import FeatureRepo, OnlineFeatures, repository_root
from kubemind_transformers.rag.settings import RagSettings
from tests.component.jobs_fixtures import RedisTarget, fresh_database

CLUSTER_CONFIG = repository_root() / "cluster" / "feature_store.yaml"
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def registry_url() -> Iterator[str]:
    """A fresh Postgres database as the SQLAlchemy URL Feast's SQL registry takes (psycopg 3)."""
    with fresh_database() as dsn:
        yield "postgresql+psycopg://" + dsn.removeprefix("postgresql://")


def connection_string(target: RedisTarget) -> str:
    """Feast's Redis connection string (HOST:PORT,db=N), what the Secret feast-online-store holds."""
    url = urlsplit(target.url)
    return f"{url.hostname}:{url.port or 6379},db={url.path.strip('/') or '0'}"


@pytest.fixture
def cluster_env(registry_url: str, redis_target: RedisTarget) -> dict[str, str]:
    """The two variables the cluster's pods get from the Secrets feast-registry and feast-online-store."""
    return {"FEAST_REGISTRY_PATH": registry_url, "FEAST_ONLINE_STORE_CONNECTION_STRING": connection_string(redis_target)}


@pytest.fixture
def project() -> Iterator[str]:
    yield f"kubemind_cluster_test_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """features/ without its data: the parquet sources are written by the commands (as locally)."""
    destination = tmp_path / "features"
    shutil.copytree(repository_root(), destination, ignore=shutil.ignore_patterns("data"))
    return destination


def features_cli(command: str, repo: Path, project: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`kubemind features COMMAND` as the Job runs it: the cluster's config, the variables from env."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FEAST_")}
    return subprocess.run(
        [sys.executable, "-m", "kubemind.cli", "features", command, "--repo", str(repo), "--config", str(CLUSTER_CONFIG),
         "--project", project],
        env={**clean, "FEAST_USAGE": "False", **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def redis_keys(target: RedisTarget, project: str) -> int:
    """The online rows of `project` in Redis (Feast's keys end with the project's name)."""
    client = redis.Redis.from_url(target.url)
    try:
        return sum(1 for _ in client.scan_iter(match=f"*{project}", count=1000))
    finally:
        client.close()


def transformer_lookup(repo: Path, project: str) -> Any:
    """The transformer's features, built as its start() builds them from its settings."""
    settings = RagSettings(feature_repo=str(repo), feature_store_yaml=str(CLUSTER_CONFIG))
    features = OnlineFeatures(FeatureRepo(Path(settings.feature_repo), settings.feature_online_store, project=project,
                                          config=settings.feature_store_yaml))  # fmt: skip
    assert features.store_name == "redis"
    return features.lookup("bob", ["assert", "no-such-topic"])


def teardown(repo: Path, project: str) -> None:
    """Feast's own teardown: the project's online rows and tables go."""
    with contextlib.suppress(Exception):  # best effort: the database is dropped anyway
        FeatureRepo(repo, project=project, config=str(CLUSTER_CONFIG)).store().teardown()


def test_apply_materialize_and_lookups_on_postgres_and_redis(
    repo_copy: Path, project: str, cluster_env: dict[str, str], redis_target: RedisTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in cluster_env.items():
        monkeypatch.setenv(name, value)
    try:
        applied = features_cli("apply", repo_copy, project, cluster_env)
        assert applied.returncode == 0, applied.stderr[-3000:]
        assert f"applied document, document_features, user, user_features to project {project}" in applied.stdout
        assert "registry sql postgresql+psycopg://" in applied.stdout
        assert (repo_copy / "data" / "users.parquet").is_file()  # written because missing

        materialized = features_cli("materialize", repo_copy, project, cluster_env)
        assert materialized.returncode == 0, materialized.stderr[-3000:]
        assert "into the redis " in materialized.stdout
        # The rows are in Redis (the online store the Secret names), nowhere on this disk.
        rows = redis_keys(redis_target, project)
        assert rows == 3 + len(topics), rows  # three users and each Python reference topic
        assert not (repo_copy / "data" / "online_store.db").exists()

        lookup = transformer_lookup(repo_copy, project)
        assert lookup.available and lookup.user_known
        assert lookup.user == {"expertise_level": "beginner", "preferred_answer_length": 120, "tenant": "acme"}
        assert lookup.quality["no-such-topic"] == 0.5 and 0.5 <= lookup.quality["assert"] <= 1.0

        # The Job runs on every rollout: applying the same definitions again changes nothing served.
        again = features_cli("apply", repo_copy, project, cluster_env)
        assert again.returncode == 0, again.stderr[-3000:]
        store = FeatureRepo(repo_copy, project=project, config=str(CLUSTER_CONFIG)).store()
        assert sorted(fv.name for fv in store.list_feature_views()) == ["document_features", "user_features"]
        assert sorted(e.name for e in store.list_entities()) == ["document", "user"]
        assert redis_keys(redis_target, project) == rows
        assert transformer_lookup(repo_copy, project).user == lookup.user
    finally:
        teardown(repo_copy, project)


def test_a_variable_the_cluster_config_needs_is_named_when_unset(repo_copy: Path, project: str, cluster_env: dict[str, str]) -> None:
    """A pod whose Secret is missing a key: the command says which variable, not a traceback."""
    missing = {k: v for k, v in cluster_env.items() if k != "FEAST_REGISTRY_PATH"}
    result = features_cli("apply", repo_copy, project, missing)
    assert result.returncode == 2
    assert "needs FEAST_REGISTRY_PATH in the environment" in result.stderr and "Traceback" not in result.stderr


def test_a_registry_that_is_down_at_start_is_a_lookup_without_features(
    repo_copy: Path, project: str, redis_target: RedisTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transformer starts while Postgres is down (nothing listens on the port): its lookups
    raise FeastUnavailable, which the retriever turns into an answer without features."""
    from kubemind.processes import free_port
    from kubemind_transformers.rag.features import FeastUnavailable

    monkeypatch.setenv("FEAST_REGISTRY_PATH", f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/feast")
    monkeypatch.setenv("FEAST_ONLINE_STORE_CONNECTION_STRING", connection_string(redis_target))
    features = OnlineFeatures(FeatureRepo(repo_copy, project=project, config=str(CLUSTER_CONFIG)))
    with pytest.raises(FeastUnavailable, match="Feast online store \\(redis\\) cannot be read: OperationalError"):
        features.lookup("bob", ["assert"])
