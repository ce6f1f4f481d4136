"""`kubemind serve` (what `make serve` runs) starts the services, prints working sample calls,
and leaves no process behind on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


def test_serve_prints_endpoints_that_answer_and_stops_cleanly(tmp_path: Path) -> None:
    # --only simple: the LLM and Triton services have their own component tests; starting their
    # engines again here would add minutes and prove nothing about `serve` itself.
    command = [sys.executable, "-m", "kubemind.cli", "serve", "--only", "simple", "--port_base", "0", "--log_dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    printed = []
    deadline = time.monotonic() + 90
    try:
        for line in process.stdout:
            printed.append(line)
            if "all services ready" in line or time.monotonic() > deadline:
                break
        output = "".join(printed)
        assert "all services ready" in output, output
        match = re.search(r"== simple: REST (http://127\.0\.0\.1:\d+)  gRPC \S+  \(pid (\d+)\)", output)
        assert match, output
        url, child_pid = match.group(1), int(match.group(2))
        sample = re.search(r"curl -s -X POST (\S+) -d '(.*)'", output)
        assert sample, output
        reply = httpx.post(sample.group(1), content=sample.group(2))
        assert reply.status_code == 200
        assert reply.json()["outputs"][0]["data"] == list(range(1, 17))
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    # the child server was stopped by PID, not orphaned
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{child_pid}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{child_pid}").exists()
    assert os.path.exists(tmp_path / "simple.log")
