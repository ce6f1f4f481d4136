"""Test-only failure windows of the CV worker (the `kill_point` setting; empty in production).

The component tests reach each window of principle 14 with a real process: the worker SIGKILLs
itself at the exact point, so no cleanup code runs, as after an OOM kill or a node loss.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from kubemind_workers.settings import CVWorkerSettings

logger = logging.getLogger("kubemind.workers.kill_points")


class KillPoints:
    def __init__(self, settings: CVWorkerSettings):
        self.point = settings.kill_point
        self.after_jobs = settings.kill_after_jobs
        self.stall_seconds = settings.stall_seconds
        self.passed = 0
        self.stalled = False

    def _due(self, point: str, jobs: int) -> bool:
        if self.point != point:
            return False
        self.passed += jobs
        return self.passed > self.after_jobs

    def reached(self, point: str, jobs: int) -> None:
        """SIGKILL this process if `point` is the configured one and enough jobs went past it."""
        if self._due(point, jobs):
            logger.warning("kill point %s reached after %d jobs: SIGKILL", point, self.passed)
            os.kill(os.getpid(), signal.SIGKILL)

    async def stall(
        self, jobs: int, drop_connection: Callable[[], Awaitable[None]], superseded: Callable[[], Awaitable[bool]]
    ) -> None:
        """stall_after_infer, once: drop the broker connection (the broker hands the jobs to
        another worker), wait until that worker has claimed them (at most stall_seconds), then let
        this now-stale attempt go on to store its result. Waiting for the takeover, not a fixed
        time, keeps the window exact however slow the other worker is to start."""
        if self.stalled or not self._due("stall_after_infer", jobs):
            return
        self.stalled = True
        logger.warning("stall point reached: dropping the broker connection for up to %.1fs", self.stall_seconds)
        await drop_connection()
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.stall_seconds
        while loop.time() < give_up_at and not await superseded():
            await asyncio.sleep(0.1)
