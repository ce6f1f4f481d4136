"""The audit log in Postgres (a cluster's sink): the only module of kubemind.audit that imports
asyncpg. Rows keep each record's canonical JSON verbatim, so `verify` re-hashes exactly what
was written; a second table holds the head."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from kubemind.audit.log import GENESIS, AuditRecord, VerifyResult, canonical, chain, verify_lines
from kubemind.audit.settings import AuditSettings


class PostgresAuditLog:
    def __init__(self, dsn: str, settings: AuditSettings):
        self.dsn = dsn
        self.settings = settings
        self.table = settings.table
        self.where = f"postgres table {self.table}"

    async def _connect(self) -> asyncpg.Connection:
        connection = await asyncpg.connect(self.dsn, timeout=10)
        await connection.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (seq bigint PRIMARY KEY, hash text NOT NULL,"
            f" line text NOT NULL);"
            f" CREATE TABLE IF NOT EXISTS {self.table}_head (id int PRIMARY KEY CHECK (id = 1),"
            f" seq bigint NOT NULL, hash text NOT NULL)")
        return connection

    async def _append(self, record: AuditRecord) -> dict[str, Any]:
        connection = await self._connect()
        try:
            async with connection.transaction():
                # One writer at a time: the next seq and prev hash depend on the last row.
                await connection.execute(f"LOCK TABLE {self.table} IN SHARE ROW EXCLUSIVE MODE")
                last = await connection.fetchrow(f"SELECT seq, hash FROM {self.table} ORDER BY seq DESC LIMIT 1")
                seq = int(last["seq"]) + 1 if last else 1
                chained = chain(record.fields(self.settings), seq, str(last["hash"]) if last else GENESIS)
                await connection.execute(f"INSERT INTO {self.table} (seq, hash, line) VALUES ($1, $2, $3)",
                                         seq, chained["hash"], canonical(chained))
                await connection.execute(
                    f"INSERT INTO {self.table}_head (id, seq, hash) VALUES (1, $1, $2)"
                    " ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash", seq, chained["hash"])
            return chained
        finally:
            await connection.close()

    async def _read(self) -> tuple[list[str], tuple[int, str] | None]:
        connection = await self._connect()
        try:
            rows = await connection.fetch(f"SELECT line FROM {self.table} ORDER BY seq")
            head = await connection.fetchrow(f"SELECT seq, hash FROM {self.table}_head WHERE id = 1")
            return [str(row["line"]) for row in rows], (int(head["seq"]), str(head["hash"])) if head else None
        finally:
            await connection.close()

    def append(self, record: AuditRecord) -> dict[str, Any]:
        result: dict[str, Any] = asyncio.run(self._append(record))
        return result

    def lines(self) -> list[str]:
        return asyncio.run(self._read())[0]

    def verify(self) -> VerifyResult:
        lines, head = asyncio.run(self._read())
        return verify_lines(lines, head, where="row")


__all__ = ["PostgresAuditLog"]
