"""`kubemind serve` as a real child process, and checks on the PIDs it starts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path


class Serve:
    """`python -m kubemind.cli serve ...` as a real child process, its output in a file."""

    def __init__(self, tmp_path: Path, *argv: str, tag: str = "serve"):
        self.out = tmp_path / f"{tag}.out"
        with open(self.out, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kubemind.cli", "serve", *argv,
                 "--log_dir", str(tmp_path / f"{tag}-logs")],
                stdout=out, stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Ctrl+C stops" in self.text():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"kubemind serve exited {self.process.returncode}:\n{self.text()}")
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"kubemind serve not ready after {timeout}s:\n{self.text()}")

    @property
    def http_url(self) -> str:
        return re.search(r"REST (http://127\.0\.0\.1:\d+)", self.text())[1]  # type: ignore[index]

    @property
    def child_pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"\(pid (\d+)\)", self.text())]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        return self.process.wait(30)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent's wait is missing.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def wait_dead(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False
