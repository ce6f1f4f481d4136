"""The pipeline's request deadline (RequestDeadline): a handler past it is cancelled and the
client gets a 504 naming what ran over; a timeout of the handler's own is a 504 too; anything
else passes through unchanged."""

from __future__ import annotations

import asyncio

import pytest

from kubemind.errors import BackendTimeout, InvalidInput
from kubemind.protocol.pipeline import RequestDeadline


async def test_a_handler_past_the_deadline_is_cancelled_and_named() -> None:
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(BackendTimeout, match=r"ModelInfer call did not finish within the 0\.05 s request deadline"):
        async with RequestDeadline(0.05, "ModelInfer call"):
            await slow()
    assert cancelled.is_set()


async def test_a_timeout_inside_the_handler_is_a_backend_timeout() -> None:
    with pytest.raises(BackendTimeout, match="infer request"):
        async with RequestDeadline(10, "infer request"):
            await asyncio.wait_for(asyncio.sleep(10), timeout=0.01)


async def test_other_errors_and_results_pass_through() -> None:
    with pytest.raises(InvalidInput, match="bad"):
        async with RequestDeadline(10, "infer request"):
            raise InvalidInput("bad")
    async with RequestDeadline(10, "infer request"):
        value = await asyncio.sleep(0, result=7)
    assert value == 7
