"""The ONNX predictor's dynamic batcher: jobs merge up to the row limit, split back in order, and a
failing merged execution fails only the jobs that fail on their own."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from kubemind.errors import InvalidInput, ModelNotReady
from kubemind_predictors.onnx.batcher import Arrays, DynamicBatcher, split_outputs


def doubling(calls: list[int]) -> object:
    def run(inputs: Arrays) -> Arrays:
        x = inputs["x"]
        calls.append(int(x.shape[0]))
        if np.any(x < 0):
            raise InvalidInput("input 'x': negative values")
        return {"y": x * 2}

    return run


async def test_concurrent_jobs_share_executions_up_to_the_row_limit() -> None:
    calls: list[int] = []
    batcher = DynamicBatcher(doubling(calls), max_batch_size=4, max_queue_delay=0.05)  # type: ignore[arg-type]
    jobs = [batcher.submit({"x": np.full((1, 2), i, dtype=np.float32)}, 1) for i in range(6)]
    results = await asyncio.gather(*jobs)
    batcher.close()
    assert calls == [4, 2]
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result.outputs["y"], np.full((1, 2), 2 * i))
    assert [r.leader for r in results] == [True, False, False, False, True, False]
    assert all(r.queue_ns >= 0 for r in results)


async def test_a_failing_job_fails_alone() -> None:
    calls: list[int] = []
    batcher = DynamicBatcher(doubling(calls), max_batch_size=8, max_queue_delay=0.05)  # type: ignore[arg-type]
    good = batcher.submit({"x": np.ones((2, 1), dtype=np.float32)}, 2)
    bad = batcher.submit({"x": -np.ones((1, 1), dtype=np.float32)}, 1)
    results = await asyncio.gather(good, bad, return_exceptions=True)
    batcher.close()
    np.testing.assert_array_equal(results[0].outputs["y"], np.full((2, 1), 2.0))  # type: ignore[union-attr]
    assert isinstance(results[1], InvalidInput)
    assert calls == [3, 2, 1]  # merged, then one by one


async def test_jobs_of_different_shapes_run_apart_and_a_closed_batcher_refuses() -> None:
    calls: list[int] = []
    batcher = DynamicBatcher(doubling(calls), max_batch_size=8, max_queue_delay=0.02)  # type: ignore[arg-type]
    narrow = batcher.submit({"x": np.ones((1, 1), dtype=np.float32)}, 1)
    wide = batcher.submit({"x": np.ones((1, 3), dtype=np.float32)}, 1)
    await asyncio.gather(narrow, wide)
    assert sorted(calls) == [1, 1]
    batcher.close()
    with pytest.raises(ModelNotReady):
        await batcher.submit({"x": np.ones((1, 1), dtype=np.float32)}, 1)


def test_split_refuses_an_output_that_is_not_batched() -> None:
    with pytest.raises(InvalidInput, match="'total'"):
        split_outputs({"total": np.zeros(())}, [1, 1])


async def test_queued_rows_are_shared_among_idle_instances() -> None:
    calls: list[int] = []
    batcher = DynamicBatcher(doubling(calls), max_batch_size=8, max_queue_delay=0.05, instances=2)  # type: ignore[arg-type]
    await asyncio.gather(*(batcher.submit({"x": np.ones((1, 1), dtype=np.float32)}, 1) for _ in range(8)))
    batcher.close()
    assert sorted(calls) == [4, 4]
