"""Job status in Redis, with a TTL: the fast answer to GET /v2/jobs/{id}.

A cache only. Every write here follows a committed Postgres change, a failed Redis call is
logged and ignored (the status is then read from Postgres), and an entry never outlives its TTL.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis.asyncio as redis

from kubemind.tracing import traced

logger = logging.getLogger("kubemind.workers.status")
_REDIS = {"db.system": "redis"}


class StatusCache:
    def __init__(self, url: str, prefix: str, ttl_seconds: int):
        self.url = url
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self._client: redis.Redis | None = None

    async def open(self) -> None:
        if self._client is None:
            # Short timeouts: a slow cache must not hold the request up; Postgres answers instead.
            self._client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def key(self, job_id: str) -> str:
        return f"{self.prefix}{job_id}"

    @traced("redis SET", attributes=_REDIS)
    async def put(self, status: dict[str, Any]) -> None:
        if self._client is None:
            return
        try:
            await self._client.set(self.key(status["id"]), json.dumps(status), ex=self.ttl_seconds)
        except (redis.RedisError, OSError) as exc:
            logger.warning("status cache write for job %s failed: %s", status.get("id"), exc)

    @traced("redis GET", attributes=_REDIS)
    async def get(self, job_id: str) -> dict[str, Any] | None:
        if self._client is None:
            return None
        try:
            raw = await self._client.get(self.key(job_id))
        except (redis.RedisError, OSError) as exc:
            logger.warning("status cache read for job %s failed: %s", job_id, exc)
            return None
        return json.loads(raw) if raw else None
