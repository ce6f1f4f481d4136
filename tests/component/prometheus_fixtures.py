"""A real Prometheus (Debian's `prometheus` package) on a runtime port, scraping the targets a
test names in a file_sd file it rewrites at will (replicas come and go with revisions); stopped
and restarted by PID with its data kept, for the fail-closed tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from kubemind.processes import free_port, stop_process

SCRAPE_INTERVAL = "500ms"


class PrometheusServer:
    def __init__(self, folder: Path, scrape_interval: str = SCRAPE_INTERVAL, targets_file: Path | None = None):
        """`targets_file`: a file_sd file somebody else keeps (`kubemind up`'s), instead of the
        one set_targets writes."""
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("prometheus is not installed (Debian's prometheus package: requirements/apt.txt)")
        self.binary = binary
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.targets_file = targets_file or folder / "targets.json"
        if targets_file is None:
            self.set_targets([])
        (folder / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [{
                "job_name": "kubemind",
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
            }],
        }))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_targets(self, addresses: list[str]) -> None:
        partial = self.targets_file.with_suffix(".partial")
        partial.write_text(json.dumps([{"targets": sorted(addresses)}] if addresses else []))
        partial.replace(self.targets_file)

    def start(self, timeout: float = 60.0) -> None:
        log = (self.folder / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={self.folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.folder / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.process.returncode}: {self.log()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready after {timeout}s: {self.log()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def log(self) -> str:
        return (self.folder / "prometheus.log").read_text(errors="replace")

    def scraped(self, expr: str) -> float | None:
        """The value of a one-sample query (None while there is none): tests wait on it."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5).json()
        result = answer.get("data", {}).get("result") or []
        return float(result[0]["value"][1]) if result else None


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60.0, interval: float = 0.2) -> None:
    """Poll `condition()` until truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"not {what} after {timeout}s")
