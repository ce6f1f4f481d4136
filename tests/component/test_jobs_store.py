"""The job store's request column (migration 0005), on real Postgres: a request is stored as the
bytes of its v2 body and comes back byte for byte to the claim that runs it, a status read does
not carry it, and a job written before the migration (jsonb `request`) still runs."""

from __future__ import annotations

import json
import uuid

import asyncpg
import numpy as np

from kubemind.codecs import binary_rest_request
from kubemind_workers.batching import prepare
from kubemind_workers.store import JobStore, StoredRequest
from tests.component.jobs_fixtures import simple_body


async def test_a_binary_request_comes_back_byte_for_byte_to_its_claim_only(job_store: JobStore) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, size=(1, 224, 224, 3), dtype=np.uint8)
    request = StoredRequest(*binary_rest_request([("input", "UINT8", pixels)]))
    job, created, _ = await job_store.create_job(
        model="efficientnet_lite0", model_version="1", request=request, callback_url="http://127.0.0.1:9/hook",
        idempotency_key=None, topic="cv-jobs-store-test",
    )  # fmt: skip
    assert created and job.request is None  # the writer's own answer does not read the pixels back
    status = await job_store.get_job(job.id)
    assert status is not None and status.request is None
    claims = await job_store.claim_many([job.id], "worker-a")
    assert claims[job.id].request == request
    (tensor,) = prepare(claims[job.id]).inputs
    np.testing.assert_array_equal(tensor.array, pixels)


async def test_a_job_written_before_the_request_body_column_still_runs(job_store: JobStore, postgres_dsn: str) -> None:
    job_id = uuid.uuid4()
    connection = await asyncpg.connect(postgres_dsn)
    try:  # the row as the writer wrote it before migration 0005: the request as jsonb only
        await connection.execute(
            "INSERT INTO kubemind_jobs (id, model, model_version, request, callback_url) VALUES ($1, 'simple', '1', $2::jsonb, $3)",
            job_id, json.dumps(simple_body(4)), "http://127.0.0.1:9/hook",
        )  # fmt: skip
    finally:
        await connection.close()
    claims = await job_store.claim_many([str(job_id)], "worker-a")
    first, second = prepare(claims[str(job_id)]).inputs
    np.testing.assert_array_equal(first.array, np.arange(16, dtype=np.int32).reshape(1, 16) + 4)
    np.testing.assert_array_equal(second.array, np.full((1, 16), 4, dtype=np.int32))
