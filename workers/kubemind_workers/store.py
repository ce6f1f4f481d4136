"""The job tables in Postgres: the one source of truth of the async path.

Every state change that must survive a crash is one statement or one transaction here: a job
and its outbox message commit together; a claim raises the job's fencing token; a result is
stored only by the attempt holding the current token, so a stale attempt that finishes late
changes nothing; a webhook delivery is leased, so two senders never post the same attempt.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from kubemind.tracing import traced
from kubemind_workers.schema import apply_migrations

TERMINAL_STATES = ("succeeded", "failed")
_DB = {"db.system": "postgresql"}


@dataclass(frozen=True)
class StoredRequest:
    """A job's v2 request as the writer validated it: the bytes of a REST infer body, in the
    binary-tensor extension's form when `json_length` is set."""

    body: bytes
    json_length: int | None = None


@dataclass(frozen=True)
class Job:
    id: str
    model: str
    model_version: str
    state: str
    request: StoredRequest | None
    """Read only where it is needed (a claim); None in a job read for its status."""
    callback_url: str
    fencing_token: int
    result: dict[str, Any] | None
    error: str | None
    delivery_state: str
    delivery_attempts: int
    delivery_error: str | None
    trace_context: dict[str, str] = field(default_factory=dict)
    """The submitting request's trace context (kubemind.tracing.inject)."""
    version: int = 0
    """The row's status_version: raised by every change, so the status cache keeps the newest."""
    read_at: float = field(default_factory=time.monotonic, compare=False)
    """time.monotonic() when the statement that read this row was sent (not later than
    Postgres's snapshot of it): how old a status is when it is cached (status_cache.py)."""

    def status(self) -> dict[str, Any]:
        """What GET /v2/jobs/{id} answers (and what Redis caches)."""
        status: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "model_version": self.model_version,
            "state": self.state,
            "delivery": {"state": self.delivery_state, "attempts": self.delivery_attempts},
        }
        if self.result is not None:
            status["result"] = self.result
        if self.error:
            status["error"] = self.error
        if self.delivery_error:
            status["delivery"]["error"] = self.delivery_error
        return status


@dataclass(frozen=True)
class Claim:
    """One attempt at a job: the job as the claim left it (state `running`, its fencing token
    raised), which is also what the status cache gets; the rest is read from it."""

    job: Job

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def token(self) -> int:
        """The fencing token this attempt holds."""
        return self.job.fencing_token

    @property
    def model(self) -> str:
        return self.job.model

    @property
    def model_version(self) -> str:
        return self.job.model_version

    @property
    def request(self) -> StoredRequest:
        if self.job.request is None:
            raise RuntimeError(f"job {self.job.id}: claimed without its request")
        return self.job.request


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    job_id: str
    topic: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class OutboxBatch:
    """Outbox rows one relay holds locked; marked published on the same connection."""

    connection: asyncpg.Connection
    messages: list[OutboxMessage]

    async def mark_published(self, outbox_ids: Sequence[int]) -> None:
        await self.connection.execute(
            "UPDATE kubemind_outbox SET published_at = now() WHERE id = ANY($1::bigint[])", list(outbox_ids)
        )


@dataclass(frozen=True)
class DueDelivery:
    job: Job
    attempt: int


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str) else value


# A job's columns but its request: what a status, a delivery or a stored result reads (the
# request can be an image's pixels, and only a claim needs it).
_JOB_COLUMNS = (
    "id", "model", "model_version", "state", "callback_url", "fencing_token", "result", "error",
    "delivery_state", "delivery_attempts", "delivery_error", "trace_context", "status_version",
)  # fmt: skip
_REQUEST_COLUMNS = ("request_body", "request_json_length", "request")


def _columns(*names: str, table: str = "") -> str:
    return ", ".join(f"{table}.{name}" if table else name for name in names)


JOB = _columns(*_JOB_COLUMNS)
JOB_WITH_REQUEST = _columns(*_JOB_COLUMNS, *_REQUEST_COLUMNS)
JOB_OF_TABLE = _columns(*_JOB_COLUMNS, table="job")


def _stored_request(row: asyncpg.Record) -> StoredRequest | None:
    if row.get("request_body") is not None:
        return StoredRequest(bytes(row["request_body"]), row["request_json_length"])
    if row.get("request") is not None:  # a row from before migration 0005
        return StoredRequest(orjson.dumps(_json(row["request"])))
    return None


def _job(row: asyncpg.Record, read_at: float) -> Job:
    return Job(
        id=str(row["id"]),
        model=row["model"],
        model_version=row["model_version"],
        state=row["state"],
        request=_stored_request(row),
        callback_url=row["callback_url"],
        fencing_token=row["fencing_token"],
        result=_json(row["result"]),
        error=row["error"],
        delivery_state=row["delivery_state"],
        delivery_attempts=row["delivery_attempts"],
        delivery_error=row["delivery_error"],
        trace_context=_json(row.get("trace_context")) or {},
        version=row["status_version"],
        read_at=read_at,
    )


class JobStore:
    """asyncpg pool over the job tables; `open()` applies the migrations."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 4):
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(self.dsn, min_size=self.min_size, max_size=self.max_size)
            async with self._pool.acquire() as connection:
                await apply_migrations(connection)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the job store is not open")
        return self._pool

    # -- writer -----------------------------------------------------------------------------------
    @traced("postgres insert job", attributes=_DB)
    async def create_job(
        self,
        *,
        model: str,
        model_version: str,
        request: StoredRequest,
        callback_url: str,
        idempotency_key: str | None,
        topic: str,
        trace_context: dict[str, str] | None = None,
    ) -> tuple[Job, bool, int | None]:
        """Insert the job and its outbox message atomically: one statement, so one transaction
        and one round trip.

        Returns (job, created, outbox id). With an Idempotency-Key already used, the existing job
        comes back (created False, no new message): a client retrying never makes a second job.
        """
        started = time.monotonic()
        job_id = uuid.uuid4()
        payload: dict[str, Any] = {"job_id": str(job_id), "model": model, "model_version": model_version}
        if trace_context:
            payload["trace_context"] = trace_context  # the outbox relay's publish continues the trace
        async with self.pool.acquire() as connection:
            row = await connection.fetchrow(
                f"""WITH job AS (
                       INSERT INTO kubemind_jobs (id, model, model_version, idempotency_key, request_body,
                                                  request_json_length, callback_url, trace_context)
                       VALUES ($1, $2, $3, $4, $5, $10, $6, $9::jsonb)
                       ON CONFLICT (idempotency_key) DO NOTHING
                       RETURNING {JOB}),
                   message AS (
                       INSERT INTO kubemind_outbox (job_id, topic, payload)
                       SELECT id, $7, $8::jsonb FROM job RETURNING id)
                   SELECT job.*, (SELECT id FROM message) AS outbox_id FROM job""",
                job_id, model, model_version, idempotency_key, request.body, callback_url,
                topic, orjson.dumps(payload).decode(), orjson.dumps(trace_context or {}).decode(), request.json_length,
            )  # fmt: skip
            if row is None:
                existing = await connection.fetchrow(
                    f"SELECT {JOB} FROM kubemind_jobs WHERE idempotency_key = $1", idempotency_key
                )
                return _job(existing, started), False, None
        return _job(row, started), True, row["outbox_id"]

    @traced("postgres select job", attributes=_DB)
    async def get_job(self, job_id: str) -> Job | None:
        started = time.monotonic()
        try:
            key = uuid.UUID(job_id)
        except ValueError:
            return None
        row = await self.pool.fetchrow(f"SELECT {JOB} FROM kubemind_jobs WHERE id = $1", key)
        return _job(row, started) if row is not None else None

    # -- outbox relay -----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def unpublished(self, limit: int, settled_seconds: float, topic: str) -> AsyncIterator[OutboxBatch]:
        """`topic`'s messages not yet published, locked for this relay until the block ends
        (another writer's relay skips them); older than `settled_seconds`, so a writer's own
        publish of a job it just committed is not raced. Only its own topic's: a relay publishes
        to its broker's topic, and another topic's jobs (a second writer sharing the database)
        belong to that writer's relay. The caller marks, on the batch, what it published."""
        async with self.pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                """SELECT id, job_id, topic, payload FROM kubemind_outbox
                   WHERE published_at IS NULL AND topic = $3 AND created_at < now() - make_interval(secs => $2)
                   ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
                limit, settled_seconds, topic,
            )  # fmt: skip
            messages = [OutboxMessage(r["id"], str(r["job_id"]), r["topic"], _json(r["payload"])) for r in rows]
            yield OutboxBatch(connection, messages)

    async def requeue_stuck(self, older_than_seconds: float) -> int:
        """Publish again the message of every job unfinished for longer than `older_than_seconds`
        since its last change: a broker that lost messages (a memory-only broker restarted, a
        purged queue) loses no job. A job whose message was not lost gets a duplicate, which the
        fencing token makes harmless."""
        status = await self.pool.execute(
            """UPDATE kubemind_outbox SET published_at = NULL
               WHERE job_id IN (SELECT id FROM kubemind_jobs
                                WHERE state IN ('queued', 'running')
                                  AND updated_at < now() - make_interval(secs => $1))
                 AND published_at < now() - make_interval(secs => $1)""",
            older_than_seconds,
        )
        return int(status.rsplit(" ", 1)[-1])

    @traced("postgres mark published", attributes=_DB)
    async def mark_published(self, outbox_ids: Sequence[int]) -> None:
        """Committed without waiting for the WAL flush (synchronous_commit off, this transaction
        only): a mark lost to a Postgres crash only makes the relay publish the message again,
        which the fencing token makes harmless, and not waiting halves the writer's commit waits."""
        await self.pool.execute(
            """UPDATE kubemind_outbox SET published_at = now()
               FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
               WHERE id = ANY($1::bigint[]) AND published_at IS NULL""",
            list(outbox_ids),
        )

    # -- worker -----------------------------------------------------------------------------------
    @traced("postgres claim jobs", attributes=_DB)
    async def claim_many(self, job_ids: Sequence[str], worker: str) -> dict[str, Claim]:
        """Start an attempt at each job, in one statement: raise its fencing token and record
        the attempt. Jobs finished already (a redelivery after the result was stored: the caller
        just acknowledges) or unknown are left out. The token also counts the job's claims: the
        caller dead-letters one claimed too often (a poison message)."""
        started = time.monotonic()
        rows = await self.pool.fetch(
            f"""WITH claimed AS (
                   UPDATE kubemind_jobs SET fencing_token = fencing_token + 1, state = 'running', updated_at = now()
                   WHERE id = ANY($1::uuid[]) AND state NOT IN ('succeeded', 'failed')
                   RETURNING {JOB_WITH_REQUEST}),
               attempts AS (
                   INSERT INTO kubemind_job_attempts (job_id, token, worker)
                   SELECT id, fencing_token, $2 FROM claimed)
               SELECT * FROM claimed""",
            [uuid.UUID(job_id) for job_id in dict.fromkeys(job_ids)], worker,
        )  # fmt: skip
        return {
            str(r["id"]): Claim(_job(r, started))
            for r in rows
        }

    @traced("postgres store results", attributes=_DB)
    async def store_results(self, results: Sequence[tuple[Claim, dict[str, Any]]]) -> dict[str, Job]:
        """Store each result whose attempt still holds its job's token, in one statement; the
        jobs stored, by id. An attempt left out was stale (a newer one holds the job): it is
        recorded so and changes nothing. Storing makes the webhook due in the same statement,
        so a stored result is always delivered."""
        started = time.monotonic()
        rows = await self.pool.fetch(
            f"""WITH input AS (
                   SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[]) AS t(id, token, result)),
               stored AS (
                   UPDATE kubemind_jobs AS job
                   SET state = 'succeeded', result = input.result::jsonb, result_token = input.token,
                       finished_at = now(), updated_at = now(), delivery_state = 'pending', next_delivery_at = now()
                   FROM input
                   WHERE job.id = input.id AND job.fencing_token = input.token AND job.state = 'running'
                   RETURNING {JOB_OF_TABLE}),
               outcomes AS (
                   UPDATE kubemind_job_attempts AS attempt
                   SET outcome = CASE WHEN stored.id IS NULL THEN 'stale' ELSE 'stored' END, finished_at = now()
                   FROM input LEFT JOIN stored ON stored.id = input.id
                   WHERE attempt.job_id = input.id AND attempt.token = input.token)
               SELECT * FROM stored""",
            [uuid.UUID(claim.job_id) for claim, _ in results],
            [claim.token for claim, _ in results],
            [orjson.dumps(result).decode() for _, result in results],
        )  # fmt: skip
        return {str(row["id"]): _job(row, started) for row in rows}

    async def superseded(self, claims: Sequence[Claim]) -> bool:
        """Whether a newer attempt has claimed every one of these jobs (their tokens are stale)."""
        stale = await self.pool.fetchval(
            """SELECT coalesce(bool_and(job.fencing_token > input.token), false)
               FROM unnest($1::uuid[], $2::bigint[]) AS input(id, token) JOIN kubemind_jobs AS job ON job.id = input.id""",
            [uuid.UUID(claim.job_id) for claim in claims], [claim.token for claim in claims],
        )  # fmt: skip
        return bool(stale)

    @traced("postgres record error", attributes=_DB)
    async def record_error(self, claim: Claim, error: str) -> None:
        """An inference try failed (it will be retried or dead-lettered)."""
        await self.pool.execute(
            "UPDATE kubemind_job_attempts SET error = $3 WHERE job_id = $1 AND token = $2",
            uuid.UUID(claim.job_id), claim.token, error,
        )  # fmt: skip

    @traced("postgres fail job", attributes=_DB)
    async def fail_job(self, job_id: str, token: int | None, reason: str) -> bool:
        """Dead-letter: state `failed` with the reason, and the failure is delivered like a result.
        With a token, only if that attempt still holds the job."""
        async with self.pool.acquire() as connection, connection.transaction():
            status = await connection.execute(
                """UPDATE kubemind_jobs
                   SET state = 'failed', error = $2, finished_at = now(), updated_at = now(),
                       delivery_state = 'pending', next_delivery_at = now()
                   WHERE id = $1 AND state NOT IN ('succeeded', 'failed')
                     AND ($3::bigint IS NULL OR fencing_token = $3)""",
                uuid.UUID(job_id), reason, token,
            )  # fmt: skip
            failed = status.endswith(" 1")
            if token is not None:
                await connection.execute(
                    """UPDATE kubemind_job_attempts SET outcome = $3, error = $4, finished_at = now()
                       WHERE job_id = $1 AND token = $2""",
                    uuid.UUID(job_id), token, "dead_lettered" if failed else "stale", reason,
                )  # fmt: skip
        return failed

    # -- webhook sender ---------------------------------------------------------------------------
    async def lease_deliveries(self, limit: int, lease_seconds: float) -> list[DueDelivery]:
        """Due deliveries, each leased for `lease_seconds` so no other sender takes it meanwhile
        (a sender that dies mid-POST loses its lease, and the delivery is retried)."""
        started = time.monotonic()
        rows = await self.pool.fetch(
            f"""UPDATE kubemind_jobs SET next_delivery_at = now() + make_interval(secs => $2),
                      delivery_attempts = delivery_attempts + 1
               WHERE id IN (SELECT id FROM kubemind_jobs
                            WHERE delivery_state = 'pending' AND next_delivery_at <= now()
                            ORDER BY next_delivery_at LIMIT $1 FOR UPDATE SKIP LOCKED)
               RETURNING {JOB}""",
            limit, lease_seconds,
        )  # fmt: skip
        return [DueDelivery(_job(row, started), row["delivery_attempts"]) for row in rows]

    @traced("postgres record delivery", attributes=_DB)
    async def record_delivery(
        self,
        job_id: str,
        attempt: int,
        webhook_id: str,
        status_code: int | None,
        error: str | None,
        *,
        delivered: bool,
        retry_in: float | None,
    ) -> Job:
        """One webhook attempt, and what follows it: delivered, retried later, or given up.
        Returns the job as it now is."""
        started = time.monotonic()
        state = "delivered" if delivered else ("pending" if retry_in is not None else "failed")
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                """INSERT INTO kubemind_webhook_attempts (job_id, attempt, webhook_id, status_code, error)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
                uuid.UUID(job_id), attempt, webhook_id, status_code, error,
            )  # fmt: skip
            row = await connection.fetchrow(
                f"""UPDATE kubemind_jobs SET delivery_state = $2, delivery_error = $3,
                          next_delivery_at = CASE WHEN $4::float8 IS NULL THEN NULL
                                                  ELSE now() + make_interval(secs => $4::float8) END
                   WHERE id = $1 RETURNING {JOB}""",
                uuid.UUID(job_id), state, None if delivered else error, retry_in,
            )  # fmt: skip
        return _job(row, started)
