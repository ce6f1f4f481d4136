"""`kubemind serve` owns its children: SIGTERM stops them, and so does a SIGKILL of
`kubemind serve` itself (the children ask for SIGTERM when their parent dies); one that exits is
restarted on its ports."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.component.serve_fixtures import Serve, pid_alive, wait_dead


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_no_child_outlives_kubemind_serve(tmp_path: Path, sig: int) -> None:
    serve = Serve(tmp_path, "--only", "simple", "--port_base", "0")
    try:
        serve.wait_ready(timeout=120)
        (child,) = serve.child_pids
        assert pid_alive(child)
        assert httpx.get(f"{serve.http_url}/v2/health/ready", timeout=10).status_code == 200
    finally:
        code = serve.stop(sig)
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    assert wait_dead(child), f"the simple predictor (pid {child}) outlived kubemind serve"


def test_a_service_that_exits_is_restarted_on_its_ports(tmp_path: Path) -> None:
    """Issue 18: a server whose engine died exits so that its supervisor restarts it; under
    `kubemind serve` that supervisor is serve itself (as under `kubemind up`)."""
    serve = Serve(tmp_path, "--only", "simple", "--port_base", "0")
    try:
        serve.wait_ready(timeout=120)
        (first,) = serve.child_pids
        url = serve.http_url
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while "simple-0: ready on REST" not in serve.text():
            assert time.monotonic() < deadline and serve.process.poll() is None, serve.text()
            time.sleep(0.2)
        assert "simple-0: exited with -9; restarting in 1s" in serve.text()
        assert httpx.get(f"{url}/v2/health/ready", timeout=10).status_code == 200  # the same port
        (second,) = [child.pid for child in psutil.Process(serve.process.pid).children()]
        assert second != first and not pid_alive(first)
    finally:
        code = serve.stop()
    assert code == 0
    assert wait_dead(second), f"the restarted predictor (pid {second}) outlived kubemind serve"
