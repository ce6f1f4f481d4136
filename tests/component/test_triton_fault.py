"""Triton dies under load and comes back: the predictor fails fast, never hangs, and recovers."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from kubemind.processes import ServerProcess, start_server
from kubemind_predictors.triton.launcher import TritonServerProcess
from tests.component.triton_fixtures import (
    PREDICTOR_DEADLINE_SECONDS,
    require_triton,
    restart_triton,
    running_predictor,
    running_triton,
    stock_client,
)

BODY = {
    "inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(16))},
        {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16},
    ]
}
GRPC_REQUEST = {"model": "simple", "inputs": BODY["inputs"], "timeout": 30.0}


# The same request with binary tensors (what tritonclient.http sends): the REST passthrough path.
_BINARY_HEADER = orjson.dumps({"inputs": [
    {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}},
    {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}},
]})  # fmt: skip
BINARY_BODY = _BINARY_HEADER + np.arange(16, dtype=np.int32).tobytes() + np.ones(16, dtype=np.int32).tobytes()


@dataclass
class Traffic:
    """A stream of requests from a background thread, JSON and binary bodies in turn, recording
    (status, seconds, binary) per request."""

    url: str
    results: list[tuple[int, float, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def post(self, client: httpx.Client, binary: bool) -> int:
        if binary:
            headers = {"Inference-Header-Content-Length": str(len(_BINARY_HEADER))}
            return client.post(self.url, content=BINARY_BODY, headers=headers).status_code
        return client.post(self.url, json=BODY).status_code

    def run(self) -> None:
        # The client timeout is far past the predictor's deadline: a hang would show as a long call.
        binary = False
        with httpx.Client(timeout=PREDICTOR_DEADLINE_SECONDS * 4) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    status = self.post(client, binary)
                except httpx.TimeoutException:
                    status = -1
                self.results.append((status, time.monotonic() - started, binary))
                binary = not binary
                time.sleep(0.01)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TritonServerProcess, ServerProcess]]:
    workdir = tmp_path_factory.mktemp("triton-fault")
    with running_triton(workdir, ["simple"]) as triton, running_predictor(triton, workdir) as predictor:
        yield triton, predictor


def test_killed_triton_gives_fast_503_then_the_predictor_recovers(
    stack: tuple[TritonServerProcess, ServerProcess],
) -> None:
    triton, predictor = stack
    traffic = Traffic(f"{predictor.http_url}/v2/models/simple/infer")
    thread = threading.Thread(target=traffic.run, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        before_kill = len(traffic.results)
        triton.kill()
        time.sleep(2.0)
        during_outage = traffic.results[before_kill:]
        (grpc_answer,) = stock_client(predictor.grpc_address, GRPC_REQUEST)

        restarted = restart_triton(triton)
        try:
            recovered_at = None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and recovered_at is None:
                time.sleep(0.2)
                recent = traffic.results[-4:]
                if len(recent) == 4 and all(status == 200 for status, _, _ in recent):
                    recovered_at = time.monotonic()
            (grpc_recovered,) = stock_client(predictor.grpc_address, GRPC_REQUEST)
        finally:
            traffic.stop.set()
            thread.join(PREDICTOR_DEADLINE_SECONDS * 5)
            restarted.stop()
    finally:
        traffic.stop.set()

    assert before_kill > 0 and all(status == 200 for status, _, _ in traffic.results[:before_kill])
    statuses = {status for status, _, _ in during_outage}
    assert statuses <= {200, 503}, f"unexpected statuses while Triton was down: {statuses}"
    for binary in (False, True):  # the decoding path and the passthrough path alike
        assert 503 in {status for status, _, sent_binary in during_outage if sent_binary == binary}, (
            f"no 503 for {'binary' if binary else 'JSON'} requests while Triton was down"
        )
    slowest = max(seconds for _, seconds, _ in during_outage)
    assert slowest < PREDICTOR_DEADLINE_SECONDS, f"a request took {slowest:.2f}s while Triton was down"
    assert len(during_outage) > 10, "requests should fail fast, not trickle"
    assert grpc_answer["error"]["status"] == "StatusCode.UNAVAILABLE"
    assert recovered_at is not None, "the predictor did not recover after Triton came back"
    assert "outputs" in grpc_recovered, f"gRPC (the passthrough path) did not recover: {grpc_recovered}"


def test_sigterm_stops_the_triton_it_launched(tmp_path: Path) -> None:
    require_triton()
    args = ["--models", "simple", "--launch_triton", "true"]
    args += ["--triton_http_port", "0", "--triton_grpc_port", "0", "--triton_metrics_port", "0"]
    server = start_server("kubemind_predictors.triton", args, tmp_path / "predictor.log", ready_timeout=90)
    try:
        started = re.search(r"started tritonserver pid (\d+)", server.log())
        assert started, server.log()
        triton_pid = int(started.group(1))
        assert httpx.post(f"{server.http_url}/v2/models/simple/infer", json=BODY, timeout=10).status_code == 200
    finally:
        exit_code = server.stop()

    assert exit_code == 0
    assert not Path(f"/proc/{triton_pid}").exists(), "tritonserver outlived the predictor"
    assert "stopped tritonserver" in server.log()


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def _is_zombie(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) == "Z"
    except OSError:
        return False


def test_a_sigkilled_launched_triton_is_reaped_its_stubs_killed_and_it_is_relaunched(tmp_path: Path) -> None:
    """Issue 18: --launch_triton supervises the Triton it started."""
    require_triton()
    args = ["--models", "simple", "--launch_triton", "true"]
    args += ["--triton_http_port", "0", "--triton_grpc_port", "0", "--triton_metrics_port", "0"]
    server = start_server("kubemind_predictors.triton", args, tmp_path / "predictor.log", ready_timeout=120)
    try:
        started = re.findall(r"started tritonserver pid (\d+)", server.log())
        first = int(started[0])
        assert len(_group_members(first)) >= 2, "the simple model's Python-backend stub runs in Triton's group"
        os.kill(first, signal.SIGKILL)  # Triton alone: its stubs are left behind by the kernel
        deadline = time.monotonic() + 120
        relaunched = None
        while time.monotonic() < deadline:
            pids = [int(p) for p in re.findall(r"started tritonserver pid (\d+)", server.log())]
            if len(pids) > 1:
                relaunched = pids[-1]
                reply = httpx.post(f"{server.http_url}/v2/models/simple/infer", json=BODY, timeout=10)
                if reply.status_code == 200:
                    break
            time.sleep(0.5)
        assert relaunched is not None and relaunched != first, server.log()
        assert reply.status_code == 200, reply.text
        assert not _group_members(first), "the old Triton's stubs were orphaned"
        assert not _is_zombie(first), "the dead tritonserver was not reaped"
    finally:
        exit_code = server.stop()
    assert exit_code == 0
    assert "relaunching in 1 s" in server.log()
