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

    async def stall(self, jobs: int, drop_connection: Callable[[], Awaitable[None]]) -> None:
        """stall_after_infer, once: drop the broker connection (the broker hands the jobs to
        another worker), wait, then let this now-stale attempt go on to store its result."""
        if self.stalled or not self._due("stall_after_infer", jobs):
            return
        self.stalled = True
        logger.warning("stall point reached: dropping the broker connection for %.1fs", self.stall_seconds)
        await drop_connection()
        await asyncio.sleep(self.stall_seconds)
