"""`kubemind up` end to end: real predictor processes, a real nginx, the stock Triton clients.

One `up` of a two-replica `simple` service serves the first tests in order (start-up is the
slow part on a shared 2-core machine); the canary test edits its overlay while it runs, and the
last test takes it down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http

from tests.component.serve_fixtures import pid_alive, wait_dead
from tests.component.up_fixtures import (
    Up,
    cli,
    process_pids,
    revisions,
    write_overlay,
    write_rate_limit,
)

INPUT = np.arange(16, dtype=np.int32).reshape(1, 16)


def infer(client: triton_http.InferenceServerClient) -> triton_http.InferResult:
    inputs = [triton_http.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(INPUT)
    return client.infer("simple", inputs)


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_overlay(tmp_path_factory.mktemp("overlay") / "local", versions="1", min_replicas=2)


@pytest.fixture(scope="module")
def up(overlay: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    running = Up(overlay, tmp_path_factory.mktemp("home"))
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def test_up_serves_the_spec_through_the_gateway_to_the_stock_clients(up: Up) -> None:
    client = triton_http.InferenceServerClient(up.base_url)
    assert client.is_server_ready()
    result = infer(client)
    assert (result.as_numpy("OUTPUT0") == 2 * INPUT).all()
    assert result.get_response()["model_version"] == "1"
    gateway = up.state()["gateway"]
    # By Host too, as a cluster's ingress routes it; an unknown one is a 404 naming it.
    by_host = httpx.get(f"http://127.0.0.1:{gateway['http_port']}/v2/models/simple",
                        headers={"host": "simple.kubemind.localhost"})
    assert by_host.status_code == 200 and by_host.headers["x-kubemind-revision"].startswith("simple-predictor-")
    unknown = httpx.get(f"http://127.0.0.1:{gateway['http_port']}/v2/models/simple", headers={"host": "nope"})
    assert unknown.status_code == 404 and "nope" in unknown.text
    # gRPC (h2c) through the gateway with tritonclient.grpc, in its own process: it cannot share
    # one with kserve (both register the `inference` protobuf package).
    probe = subprocess.run([sys.executable, "-c", (
        "import sys, numpy as np, tritonclient.grpc as g\n"
        f"c = g.InferenceServerClient('127.0.0.1:{gateway['grpc_port']}')\n"
        "ins = [g.InferInput(n, [1, 16], 'INT32') for n in ('INPUT0', 'INPUT1')]\n"
        "[i.set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16)) for i in ins]\n"
        "print(c.is_server_ready(), c.infer('simple', ins).as_numpy('OUTPUT0')[0, 3])\n")],
        capture_output=True, text=True, timeout=60, check=False)
    assert probe.stdout.split() == ["True", "6"], probe.stderr
    table = cli(up.home, "status")
    assert table.returncode == 0
    row = next(line for line in table.stdout.splitlines() if line.startswith("kubemind/simple"))
    assert row.split()[3:5] == ["100%", "2/2"] and "/serving/kubemind/simple" in row


def test_a_killed_replica_is_restarted_and_requests_keep_succeeding(up: Up) -> None:
    before = process_pids(up.state())
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    client = triton_http.InferenceServerClient(up.base_url)
    # nginx's passive health check sends every request to the other replica meanwhile.
    for _ in range(30):
        assert infer(client).get_response()["model_version"] == "1"
    state = up.wait_for(lambda s: revisions(s)[0]["ready"] == 2 and before[0] not in process_pids(s),
                        "restarted")
    assert revisions(state)[0]["restarts"] == 1
    assert before[1] in process_pids(state)
    assert "exited with -9; restarting in 1s" in up.text()


class Background:
    """Requests through the gateway on a thread of their own, while the test reconfigures it."""

    def __init__(self, base_url: str):
        self.client = triton_http.InferenceServerClient(base_url)
        self.stop = threading.Event()
        self.done = 0
        self.errors: list[str] = []
        self.stale_retries = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                self._infer_once_more_on_a_stale_connection()
                self.done += 1
            except Exception as exc:  # every failure is the finding
                self.errors.append(repr(exc))

    def _infer_once_more_on_a_stale_connection(self) -> None:
        # An nginx worker retired by a reload closes its idle keep-alive connections; a request
        # sent on one at that instant sees "connection closed" before any byte of an answer.
        # Every HTTP client pool meets that race; retrying it once is what such pools do.
        try:
            infer(self.client)
        except Exception as exc:
            if "HTTPConnectionClosed" not in repr(exc):
                raise
            self.stale_retries += 1
            infer(self.client)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(30)


def test_canary_traffic_percent_splits_requests_between_the_two_revisions(up: Up, overlay: Path) -> None:
    stable = revisions(up.state())[0]["revision"]
    generation = up.state()["gateway"]["generation"]
    background = Background(up.base_url)  # across two reloads and a revision's retirement
    write_overlay(overlay, versions="2", min_replicas=1, canary=20)
    state = up.wait_for(lambda s: len(revisions(s)) == 2 and all(r["ready"] == r["wanted"] for r in revisions(s))
                        and sorted(r["traffic"] for r in revisions(s)) == [20, 80], "split 80/20")
    canary = next(r["revision"] for r in revisions(state) if r["revision"] != stable)
    client = triton_http.InferenceServerClient(up.base_url)
    served = [infer(client).get_response()["model_version"] for _ in range(500)]
    # Binomial(500, 0.2): mean 100, sd 8.9; 4.5 sd either side fails a correct split 1 in 100,000.
    assert 60 <= served.count("2") <= 140, served.count("2")
    assert served.count("1") + served.count("2") == 500
    # Promotion: without canaryTrafficPercent the latest revision takes everything and the
    # previous one is stopped.
    old_pids = [pid for r in revisions(state) if r["revision"] == stable for pid in r["pids"]]
    write_overlay(overlay, versions="2", min_replicas=1)
    up.wait_for(lambda s: [(r["revision"], r["traffic"]) for r in revisions(s)] == [(canary, 100)], "promoted")
    assert {infer(client).get_response()["model_version"] for _ in range(20)} == {"2"}
    assert all(wait_dead(pid) for pid in old_pids)
    background.finish()
    assert up.state()["gateway"]["generation"] >= generation + 2
    assert background.errors == [] and background.done > 100, (background.done, background.errors[:3])
    assert background.stale_retries <= 3, background.stale_retries


def test_a_rejected_edit_is_reported_and_the_running_revision_stays(up: Up, overlay: Path) -> None:
    running = [r["revision"] for r in revisions(up.state())]
    spec = (overlay / "simple.yaml").read_text()
    write_overlay(overlay, versions="2", min_replicas=1, extra_args=("--no_such_flag=1",))
    deadline = time.monotonic() + 60
    while "change refused" not in up.text():
        assert time.monotonic() < deadline, up.text()
        time.sleep(0.2)
    assert "unrecognized arguments: --no_such_flag=1" in up.text()
    assert [r["revision"] for r in revisions(up.state())] == running
    assert infer(triton_http.InferenceServerClient(up.base_url)).get_response()["model_version"] == "2"
    (overlay / "simple.yaml").write_text(spec)


def test_down_stops_every_process_by_pid(up: Up) -> None:
    state = up.state()
    pids = [*process_pids(state), state["gateway"]["pid"], state["pid"]]
    assert all(pid_alive(pid) for pid in pids)
    result = cli(up.home, "down")
    assert result.returncode == 0, result.stderr
    assert all(wait_dead(pid, 5) for pid in pids), [pid for pid in pids if pid_alive(pid)]
    assert cli(up.home, "status").stdout.strip() == "kubemind up is not running"


def test_up_refuses_a_spec_validate_rejects_with_the_same_message(tmp_path: Path) -> None:
    overlay = write_overlay(tmp_path / "bad", extra_args=("--no_such_flag=1",))
    validate = cli(tmp_path, "validate", str(overlay))
    assert validate.returncode == 1
    problems = [line for line in validate.stdout.splitlines() if "--no_such_flag" in line]
    assert problems, validate.stdout
    started = time.monotonic()
    result = cli(tmp_path / "home", "up", str(overlay), "--http_port", "0", "--grpc_port", "0")
    assert result.returncode == 1
    assert "nothing started" in result.stderr
    for line in problems:
        assert line in result.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "home" / "up" / "state.json").exists()


def test_the_istio_local_rate_limit_answers_429_beyond_the_bucket(tmp_path: Path) -> None:
    overlay = write_overlay(tmp_path / "overlay", min_replicas=1)
    limit = write_rate_limit(tmp_path / "rate-limit.yaml", tokens_per_second=1, max_tokens=5)
    up = Up(overlay, tmp_path / "home", "--istio", str(limit))
    try:
        up.wait_ready()
        client = triton_http.InferenceServerClient(up.base_url)
        started = time.monotonic()
        codes = []
        for _ in range(20):
            try:
                infer(client)
                codes.append(200)
            except triton_http.InferenceServerException as exc:
                codes.append(int(str(exc.status())))
        elapsed = time.monotonic() - started
        # The bucket: 5 at once, then 1 a second.
        assert codes[:5] == [200] * 5, codes
        assert set(codes) == {200, 429} and codes.count(200) <= 5 + int(elapsed) + 1, (codes, elapsed)
    finally:
        up.stop()


def test_no_process_outlives_a_killed_up(tmp_path: Path) -> None:
    up = Up(write_overlay(tmp_path / "overlay", min_replicas=1), tmp_path / "home")
    state = up.wait_ready()
    children = [*process_pids(state), state["gateway"]["pid"]]
    os.kill(state["pid"], signal.SIGKILL)
    up.process.wait(10)
    # Each child asked the kernel for SIGTERM when `up` dies (PR_SET_PDEATHSIG).
    assert all(wait_dead(pid, 20) for pid in children), [pid for pid in children if pid_alive(pid)]
    assert cli(tmp_path / "home", "status").stdout.strip() == "kubemind up is not running"


def test_min_replicas_zero_starts_a_replica_on_the_first_request_and_goes_back_to_zero_when_idle(
        tmp_path: Path) -> None:
    up = Up(write_overlay(tmp_path / "overlay", min_replicas=0), tmp_path / "home", "--scale_to_zero_after", "4")
    try:
        state = up.wait_ready()
        assert process_pids(state) == [] and revisions(state)[0]["wanted"] == 0
        # The first request waits for the cold start (through the activator), then succeeds.
        client = triton_http.InferenceServerClient(up.base_url, network_timeout=120.0)
        result = infer(client)
        assert (result.as_numpy("OUTPUT0") == 2 * INPUT).all()
        assert "cold start" in up.text()
        up.wait_for(lambda s: revisions(s)[0]["ready"] == 1, "one replica")
        # Then nginx routes to the replica itself (the state is written after the reload).
        conf = (tmp_path / "home" / "up" / "gateway" / "nginx.conf").read_text()
        http_upstream = conf.split("-http {", 1)[1].split("}", 1)[0]
        assert "scaled to zero" not in http_upstream and "max_fails=1" in http_upstream
        assert infer(client).get_response()["model_version"] == "1"
        # Idle past --scale_to_zero_after: back to zero, and the next request wakes it again.
        woken = process_pids(up.state())
        up.wait_for(lambda s: process_pids(s) == [], "scaled back to zero")
        assert all(wait_dead(pid) for pid in woken)
        assert "idle for" in up.text() and "scaled to zero" in up.text()
        assert (infer(client).as_numpy("OUTPUT0") == 2 * INPUT).all()
        assert up.text().count("cold start") == 2
    finally:
        up.stop()
