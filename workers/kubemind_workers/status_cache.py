"""Job status in Redis, with a TTL: the fast answer to GET /v2/jobs/{id}.

A cache only. Every write here follows a committed Postgres change, a failed Redis call is
logged and ignored (the status is then read from Postgres), and an entry never outlives its TTL.

Writes are monotonic: each entry holds the job's `status_version` (raised by Postgres on every
change of the job's row) beside the status, and a Lua script replaces it only with a newer
version, atomically. So writers racing each other (a worker caching `running` while the writer
re-caches the `queued` it read a moment before, a stale attempt's late write) can never make
the cache show an older state than one it showed already.

An expired entry forgets its version, so a write of an older read could then fill it again. It
cannot: every newer version than a read was cached after that read was sent (Postgres committed
it after the read's snapshot), so it is still cached — and the script refuses the older write —
until a TTL has passed since the read. A status read longer ago than that (less a margin for the
round trip to Redis) is not cached at all; the next read from Postgres caches a fresh one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as redis

from kubemind.tracing import traced
from kubemind_workers.store import Job

logger = logging.getLogger("kubemind.workers.status")
_REDIS = {"db.system": "redis"}

# KEYS[1] the job's key; ARGV: version, status JSON, TTL seconds. 1 if written, 0 if it held
# this version or a newer one already.
_PUT_IF_NEWER = """
local held = tonumber(redis.call('HGET', KEYS[1], 'version'))
if held and held >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'status', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
READ_AGE_MARGIN_SECONDS = 1.0
"""How much sooner than the TTL a read is too old to cache: more than a write's trip to Redis
(its socket timeout is 0.5 s), so the newer entry it could overwrite has not expired there yet."""


class StatusCache:
    def __init__(self, url: str, prefix: str, ttl_seconds: int):
        self.url = url
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self._client: redis.Redis | None = None
        self._put_if_newer: Any = None

    async def open(self) -> None:
        if self._client is None:
            # Short timeouts: a slow cache must not hold the request up; Postgres answers instead.
            self._client = redis.Redis.from_url(
                self.url, socket_timeout=0.5, socket_connect_timeout=0.5
            )
            self._put_if_newer = self._client.register_script(_PUT_IF_NEWER)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def key(self, job_id: str) -> str:
        return f"{self.prefix}{job_id}"

    async def put(self, job: Job) -> None:
        await self.put_many([job])

    @traced("redis EVALSHA put-if-newer", attributes=_REDIS)
    async def put_many(self, jobs: Sequence[Job]) -> None:
        """Cache each job's status unless the cache holds a newer version of it, or could have
        held one that expired since (a read older than the TTL); one round trip."""
        oldest = time.monotonic() - (self.ttl_seconds - min(READ_AGE_MARGIN_SECONDS, self.ttl_seconds / 2))
        jobs = [job for job in jobs if job.read_at > oldest]
        if self._client is None or not jobs:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for job in jobs:
                    await self._put_if_newer(
                        keys=[self.key(job.id)],
                        args=[job.version, orjson.dumps(job.status()), self.ttl_seconds],
                        client=pipe,
                    )
                await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            logger.warning(
                "status cache write for %d jobs (%s...) failed: %s", len(jobs), jobs[0].id, exc
            )

    @traced("redis HGET", attributes=_REDIS)
    async def get(self, job_id: str) -> dict[str, Any] | None:
        if self._client is None:
            return None
        try:
            raw = await self._client.hget(self.key(job_id), "status")
        except (redis.RedisError, OSError) as exc:
            logger.warning("status cache read for job %s failed: %s", job_id, exc)
            return None
        return orjson.loads(raw) if raw else None
