"""`kubemind serve` owns its children: SIGTERM stops them, and so does a SIGKILL of
`kubemind serve` itself (the children ask for SIGTERM when their parent dies)."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
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
