"""Versioned plain-SQL migrations, applied at start by every process that uses the job tables.

Files in `migrations/` are named `NNNN_what.sql` and applied in order, each in its own
transaction together with its row in `kubemind_schema_migrations`. A transaction-level advisory
lock serialises concurrent starters (a writer and two workers starting at once): the second
waits, then sees the versions already applied and skips them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant: every kubemind process takes the same lock before migrating.
_LOCK_KEY = 0x6B75_6265_6D69_6E64 & 0x7FFF_FFFF_FFFF_FFFF
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(folder: Path = MIGRATIONS) -> list[Migration]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise ValueError(f"migration {path.name}: name must be NNNN_words.sql")
        found.append(Migration(int(match.group(1)), path.stem, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a version in {folder}")
    return found


async def apply_migrations(connection: asyncpg.Connection, folder: Path = MIGRATIONS) -> list[str]:
    """Apply the migrations not yet applied; returns the names applied now."""
    applied_now = []
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS kubemind_schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {row["version"] for row in await connection.fetch("SELECT version FROM kubemind_schema_migrations")}
        for migration in migrations(folder):
            if migration.version in done:
                continue
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO kubemind_schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied_now.append(migration.name)
    return applied_now
