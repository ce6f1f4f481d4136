"""Dynamic batching across concurrent requests, on the event loop, with execution in threads.

Requests queue as jobs. A worker takes the oldest job and every queued job compatible with it
(same inputs, dtypes and non-batch dimensions) up to `max_batch_size` rows, optionally waiting
`max_queue_delay` for more; it concatenates them along the first dimension, runs the model once
in the executor and splits the outputs back. When a merged execution fails, each job of it is run
on its own, so one bad request fails alone and its error is its own.

No ONNX Runtime here: the batcher runs any `run(inputs) -> outputs` function on numpy arrays.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from kubemind.errors import InvalidInput, ModelNotReady

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class BatchResult:
    """One job's share of an execution."""

    outputs: Arrays
    queue_ns: int
    """From submission until its execution started."""
    leader: bool
    """The first job of its execution: the one whose statistics count the execution."""
    batch_rows: int
    """Rows the whole execution ran."""


@dataclass
class _Job:
    inputs: Arrays
    rows: int
    key: tuple[object, ...]
    future: asyncio.Future[BatchResult]
    enqueued: float = field(default_factory=time.perf_counter)


def batch_key(inputs: Arrays) -> tuple[object, ...]:
    """Jobs with equal keys can be concatenated along the first dimension."""
    return tuple((name, array.dtype.str, array.shape[1:]) for name, array in sorted(inputs.items()))


class DynamicBatcher:
    """Batches jobs for `run`; `max_batch_size=1` with one row per job disables batching."""

    def __init__(
        self,
        run: Callable[[Arrays], Arrays],
        *,
        max_batch_size: int,
        max_queue_delay: float = 0.0,
        instances: int = 1,
        name: str = "model",
    ):
        self.run = run
        self.max_batch_size = max(1, max_batch_size)
        self.max_queue_delay = max_queue_delay
        self.instances = instances
        self.name = name
        self._jobs: collections.deque[_Job] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._busy = 0  # workers executing now

    # -- lifecycle --------------------------------------------------------------------------------
    def _ensure_started(self) -> None:
        """Workers start on the first job: they belong to the loop that serves the requests."""
        if self._closed:
            raise ModelNotReady(f"model '{self.name}' is stopped")
        if self._workers:
            return
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(self.instances, thread_name_prefix=f"onnx-{self.name}")
        self._workers = [asyncio.get_running_loop().create_task(self._worker()) for _ in range(self.instances)]

    def healthy(self) -> bool:
        return not self._closed and not any(w.done() for w in self._workers)

    def close(self) -> None:
        """Cancel the workers, fail queued jobs (503), release the threads; idempotent."""
        self._closed = True
        for worker in self._workers:
            worker.cancel()
        while self._jobs:
            job = self._jobs.popleft()
            if not job.future.done():
                job.future.set_exception(ModelNotReady(f"model '{self.name}' stopped"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- requests -----------------------------------------------------------------------------------
    async def submit(self, inputs: Arrays, rows: int) -> BatchResult:
        """Queue one request's inputs (`rows` along the first dimension) and await its outputs."""
        self._ensure_started()
        assert self._wakeup is not None
        job = _Job(inputs, rows, batch_key(inputs), asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._wakeup.set()
        return await job.future

    # -- workers -----------------------------------------------------------------------------------
    def _queued_rows(self, head: _Job) -> int:
        return sum(job.rows for job in self._jobs if job.key == head.key)

    def _take(self) -> list[_Job]:
        """The head job and the compatible jobs behind it, up to max_batch_size rows, in order.

        With several instances, the queued rows are shared among the idle ones, so that eight
        queued requests on two instances run as two batches of four at once, not one of eight.
        """
        head = self._jobs[0]
        idle = max(1, self.instances - self._busy)
        limit = min(self.max_batch_size, max(head.rows, math.ceil(self._queued_rows(head) / idle)))
        self._jobs.popleft()
        batch, rows, rest = [head], head.rows, collections.deque[_Job]()
        while self._jobs:
            job = self._jobs.popleft()
            if job.key == head.key and rows + job.rows <= limit and not job.future.done():
                batch.append(job)
                rows += job.rows
            elif not job.future.done():  # a request whose client went away is dropped
                rest.append(job)
        self._jobs = rest
        return batch

    async def _wait_for_jobs(self) -> None:
        assert self._wakeup is not None
        while not self._jobs:
            self._wakeup.clear()
            await self._wakeup.wait()
        if self.max_queue_delay <= 0 or self._busy:
            # While another instance executes, requests queue anyway: waiting would only idle this one.
            return
        head = self._jobs[0]
        while self._jobs and self._queued_rows(self._jobs[0]) < self.max_batch_size:
            remaining = head.enqueued + self.max_queue_delay - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    async def _worker(self) -> None:
        while True:
            await self._wait_for_jobs()
            if not self._jobs:
                continue
            batch = self._take()
            self._busy += 1
            try:
                await self._execute(batch)
            finally:
                self._busy -= 1

    async def _execute(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        rows = sum(job.rows for job in batch)
        try:
            if len(batch) == 1:
                outputs = [await loop.run_in_executor(self._executor, self.run, batch[0].inputs)]
            else:
                merged = {name: np.concatenate([job.inputs[name] for job in batch]) for name in batch[0].inputs}
                result = await loop.run_in_executor(self._executor, self.run, merged)
                outputs = split_outputs(result, [job.rows for job in batch])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # answered per job
            if len(batch) == 1:
                _fail(batch[0], exc)
            else:
                await self._run_one_by_one(batch, started)
            return
        for index, (job, job_outputs) in enumerate(zip(batch, outputs, strict=True)):
            if not job.future.done():
                job.future.set_result(BatchResult(job_outputs, int((started - job.enqueued) * 1e9), index == 0, rows))

    async def _run_one_by_one(self, batch: list[_Job], started: float) -> None:
        """A merged execution failed: run each job alone so only the bad ones fail."""
        loop = asyncio.get_running_loop()
        for job in batch:
            if job.future.done():
                continue
            try:
                outputs = await loop.run_in_executor(self._executor, self.run, job.inputs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # this job's own error
                _fail(job, exc)
                continue
            if not job.future.done():
                job.future.set_result(BatchResult(outputs, int((started - job.enqueued) * 1e9), True, job.rows))


def split_outputs(outputs: Arrays, rows: list[int]) -> list[Arrays]:
    """Split each output along its first dimension into the jobs' shares."""
    total = sum(rows)
    offsets = np.cumsum(rows)[:-1]
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            raise InvalidInput(f"output '{name}' has shape {list(array.shape)}: not batched over {total} rows")
    parts = {name: np.split(array, offsets) for name, array in outputs.items()}
    return [{name: parts[name][index] for name in outputs} for index in range(len(rows))]


def _fail(job: _Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)
