"""Head-of-line blocking is visible per hop on /metrics: saturating the executor raises the
executor's queue wait and not the event loop's lag; blocking the loop raises the loop's lag and
queues nothing on the executor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from kserve.protocol.infer_type import InferRequest, InferResponse
from prometheus_client.parser import text_string_to_metric_families

from kubemind.codecs import NumpyOutput
from kubemind.model import KubemindModel, TensorSpec
from kubemind.server import KubemindServer
from kubemind.settings import ComponentSettings

WORK_SECONDS = 0.3
REQUESTS = 6


class SlowModel(KubemindModel):
    """Sleeps WORK_SECONDS per request: in the executor (`executor`) or on the loop (`loop`,
    what a model doing CPU work without an executor does to every other request)."""

    def __init__(self, name: str):
        super().__init__(name, inputs=[TensorSpec("x", "INT32", (-1,))], outputs=[TensorSpec("y", "INT32", (-1,))])

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        if self.name == "executor":
            await asyncio.get_running_loop().run_in_executor(None, time.sleep, WORK_SECONDS)
        else:
            time.sleep(WORK_SECONDS)
        values = np.asarray(payload.inputs[0].as_numpy())
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[NumpyOutput("y", values)])


@pytest.fixture
async def server() -> AsyncIterator[KubemindServer]:
    settings = ComponentSettings(host="127.0.0.1", http_port=0, enable_grpc=False, executor_workers=1, log_requests=False)
    running = KubemindServer(settings, [SlowModel("executor"), SlowModel("loop")])
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def _samples(text: str) -> dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
            if "le" not in sample.labels:
                found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


class Client:
    """Blocking HTTP calls from threads of its own: the server's loop and default executor (the
    stages measured) see only the requests, not the client's own connects and name lookups."""

    def __init__(self, port: int):
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=httpx.Limits(max_connections=REQUESTS))
        self.pool = ThreadPoolExecutor(REQUESTS)

    async def burst(self, model: str) -> None:
        body = {"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1]}]}
        loop = asyncio.get_running_loop()
        calls = [loop.run_in_executor(self.pool, lambda: self.http.post(f"/v2/models/{model}/infer", json=body)) for _ in range(REQUESTS)]
        replies = await asyncio.gather(*calls)
        assert [r.status_code for r in replies] == [200] * REQUESTS

    async def metrics(self) -> dict[str, float]:
        reply = await asyncio.get_running_loop().run_in_executor(self.pool, self.http.get, "/metrics")
        return _samples(reply.text)

    def close(self) -> None:
        self.pool.shutdown()
        self.http.close()


WAIT_SUM = "kubemind_executor_queue_wait_seconds_sum{executor=default}"
WAIT_COUNT = "kubemind_executor_queue_wait_seconds_count{executor=default}"
LAG_SUM = "kubemind_event_loop_lag_seconds_sum{}"


async def test_a_saturated_executor_shows_in_its_queue_wait_and_a_blocked_loop_in_its_lag(server: KubemindServer) -> None:
    client = Client(server.http_port)
    try:
        before = await client.metrics()
        assert before["kubemind_executor_threads{executor=default}"] == 1
        await client.burst("executor")
        executor = await client.metrics()
        await client.burst("loop")
        await asyncio.sleep(0.3)  # one more probe of the loop after the last blocking request
        loop = await client.metrics()
    finally:
        client.close()

    # One thread, six requests of 0.3 s each: they waited 0.3 + 0.6 + ... + 1.5 s = 4.5 s in all.
    executor_wait = executor[WAIT_SUM] - before.get(WAIT_SUM, 0)
    assert executor[WAIT_COUNT] - before.get(WAIT_COUNT, 0) >= REQUESTS
    assert executor_wait >= 0.3 * sum(range(REQUESTS)) * 0.8
    assert executor[LAG_SUM] - before[LAG_SUM] < executor_wait / 4  # the loop itself stayed free
    # Six requests blocking the loop for 0.3 s each: the probe fires ~1.8 s late in all, and the
    # executor queued nothing.
    assert loop[LAG_SUM] - executor[LAG_SUM] >= WORK_SECONDS * REQUESTS * 0.5
    assert loop[WAIT_COUNT] == executor[WAIT_COUNT]
    assert loop["kubemind_executor_queue_depth{executor=default}"] == 0
