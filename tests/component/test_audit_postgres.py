"""The audit log's cluster sink: a real Postgres (the machine's, a database of its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from kubemind.audit import audit_log, record
from kubemind.audit.settings import AuditSettings
from tests.component.jobs_fixtures import fresh_database, sql


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_database() as database:
        yield database


def verify(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubemind.cli", "audit", "verify", "--postgres", dsn],
                          capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ))


def test_postgres_log_chains_verifies_and_names_a_tampered_row(dsn: str) -> None:
    log = audit_log(AuditSettings(postgres_dsn=dsn))
    for version in ("1", "2", "3"):
        record("rollout.step", {"kind": "InferenceService", "name": "simple", "namespace": "kubemind"}, log=log,
               model="simple", version=version, before={"canary": 10}, after={"canary": 20},
               reason={"success_rate": 1.0})
    rows = sql(dsn, "SELECT seq, line FROM kubemind_audit ORDER BY seq")
    assert [row["seq"] for row in rows] == [1, 2, 3]
    assert json.loads(rows[1]["line"])["prev"] == json.loads(rows[0]["line"])["hash"]
    ok = verify(dsn)
    assert ok.returncode == 0 and "3 record(s), chain intact" in ok.stdout, ok.stderr

    # An UPDATE of one row's JSON (someone softening a rollback's reason) is named.
    sql(dsn, "UPDATE kubemind_audit SET line = replace(line, '\"canary\":20', '\"canary\":90') WHERE seq = 2")
    edited = verify(dsn)
    assert edited.returncode == 1 and "record 2 (row 2): modified" in edited.stderr

    sql(dsn, "UPDATE kubemind_audit SET line = $1 WHERE seq = 2", rows[1]["line"])
    sql(dsn, "DELETE FROM kubemind_audit WHERE seq = 3")
    deleted = verify(dsn)
    assert deleted.returncode == 1 and "record 3 deleted (the log ends at record 2" in deleted.stderr
