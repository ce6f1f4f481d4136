"""The Redis status cache follows Postgres monotonically: with the real job tables and a real
Redis, a write of an older state than the one cached (a status read re-caching what it read just
before a worker moved the job on; a stale attempt's late write) leaves the newer state showing."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest

from kubemind_workers.status_cache import StatusCache
from kubemind_workers.store import JobStore, StoredRequest
from tests.component.jobs_fixtures import RedisTarget, simple_body


@pytest.fixture
async def cache(redis_target: RedisTarget) -> AsyncIterator[StatusCache]:
    status_cache = StatusCache(
        redis_target.url, f"{redis_target.prefix}{uuid.uuid4().hex[:6]}:", ttl_seconds=60
    )
    await status_cache.open()
    try:
        yield status_cache
    finally:
        await status_cache.close()


async def _new_job(job_store: JobStore) -> str:
    job, created, _ = await job_store.create_job(
        model="simple", model_version="1", request=StoredRequest(json.dumps(simple_body(0)).encode()), callback_url="http://127.0.0.1:9/hook",
        idempotency_key=None, topic="cv-jobs-cache-test",
    )  # fmt: skip
    assert created
    return job.id


async def test_a_status_read_re_caching_late_does_not_hide_running(
    job_store: JobStore, cache: StatusCache
) -> None:
    job_id = await _new_job(job_store)
    read_before_the_claim = await job_store.get_job(
        job_id
    )  # GET /v2/jobs/{id} on a cache miss reads...
    claims = await job_store.claim_many([job_id], "worker-a")
    await cache.put_many(
        [claim.job for claim in claims.values()]
    )  # the worker caches running
    assert read_before_the_claim is not None
    await cache.put(read_before_the_claim)  # ...and re-caches the queued it read, after the worker

    cached = await cache.get(job_id)

    assert read_before_the_claim.state == "queued"
    assert cached is not None and cached["state"] == "running"


async def test_a_finished_job_never_shows_an_earlier_state_again(
    job_store: JobStore, cache: StatusCache
) -> None:
    job_id = await _new_job(job_store)
    queued = await job_store.get_job(job_id)
    first = (await job_store.claim_many([job_id], "worker-a"))[job_id]
    second = (await job_store.claim_many([job_id], "worker-b"))[
        job_id
    ]  # worker a's attempt is stale now
    stored = await job_store.store_results([(second, {"outputs": []})])
    delivered = await job_store.record_delivery(
        job_id, 1, job_id, 204, None, delivered=True, retry_in=None
    )
    assert queued is not None and first.job is not None and second.job is not None

    # Every write that came before, arriving after the newest one, in the worst order.
    await cache.put(delivered)
    for older in (stored[job_id], second.job, first.job, queued):
        await cache.put(older)
    cached = await cache.get(job_id)

    assert cached == delivered.status()
    assert cached["state"] == "succeeded" and cached["delivery"]["state"] == "delivered"
    assert (
        queued.version
        < first.job.version
        < second.job.version
        < stored[job_id].version
        < delivered.version
    )


async def test_each_newer_state_replaces_the_cached_one(
    job_store: JobStore, cache: StatusCache
) -> None:
    job_id = await _new_job(job_store)
    seen = []
    queued = await job_store.get_job(job_id)
    assert queued is not None
    await cache.put(queued)
    seen.append((await cache.get(job_id) or {}).get("state"))
    claim = (await job_store.claim_many([job_id], "worker-a"))[job_id]
    await cache.put(claim.job)
    seen.append((await cache.get(job_id) or {}).get("state"))
    stored = await job_store.store_results([(claim, {"outputs": []})])
    await cache.put(stored[job_id])
    seen.append((await cache.get(job_id) or {}).get("state"))

    assert seen == ["queued", "running", "succeeded"]


@pytest.fixture
async def short_cache(redis_target: RedisTarget) -> AsyncIterator[StatusCache]:
    status_cache = StatusCache(redis_target.url, f"{redis_target.prefix}{uuid.uuid4().hex[:6]}:", ttl_seconds=2)
    await status_cache.open()
    try:
        yield status_cache
    finally:
        await status_cache.close()


async def test_a_read_older_than_the_ttl_does_not_refill_an_expired_entry(job_store: JobStore, short_cache: StatusCache) -> None:
    """The entry showing `running` expires by TTL while a writer still holds the `queued` it read
    before the claim: that write must not bring `queued` back; a fresh read caches again."""
    import asyncio

    job_id = await _new_job(job_store)
    read_before_the_claim = await job_store.get_job(job_id)
    claim = (await job_store.claim_many([job_id], "worker-a"))[job_id]
    await short_cache.put(claim.job)
    assert (await short_cache.get(job_id) or {}).get("state") == "running"
    await asyncio.sleep(short_cache.ttl_seconds + 0.3)
    assert await short_cache.get(job_id) is None  # expired in Redis
    assert read_before_the_claim is not None

    await short_cache.put(read_before_the_claim)  # the writer's old read arrives at last
    after_the_old_write = await short_cache.get(job_id)
    fresh = await job_store.get_job(job_id)
    assert fresh is not None
    await short_cache.put(fresh)

    assert after_the_old_write is None, "an expired entry was refilled with an older state"
    assert (await short_cache.get(job_id) or {}).get("state") == "running"


async def test_a_recent_read_fills_an_empty_entry(job_store: JobStore, short_cache: StatusCache) -> None:
    job_id = await _new_job(job_store)
    queued = await job_store.get_job(job_id)
    assert queued is not None

    await short_cache.put(queued)

    assert (await short_cache.get(job_id) or {}).get("state") == "queued"
