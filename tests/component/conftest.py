"""Shared component-test fixtures: the reference `simple` server as a real process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubemind.processes import ServerProcess, running_server

# The async-jobs services (a fresh Postgres database, a Redis key prefix), one per session.
from tests.component.jobs_fixtures import job_store, postgres_dsn, redis_target  # noqa: F401


@pytest.fixture(scope="session")
def simple_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`python -m kubemind_predictors.simple` on free loopback ports, versions 1 and 2."""
    log = tmp_path_factory.mktemp("simple") / "server.log"
    with running_server(
        "kubemind_predictors.simple",
        ["--model_name", "simple", "--versions", "1,2", "--max_request_bytes", str(4 * 1024 * 1024)],
        log,
    ) as server:
        yield server
