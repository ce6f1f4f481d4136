"""A breach travels the whole alerting path: a real kubemind server made slow -> Prometheus
scraping its /metrics and evaluating the generated SLO rules -> Alertmanager -> a webhook.

The SLO is a test one (seconds-long windows, 1 s scrapes and evaluations) so the path takes
seconds, not the hour a 30-day SLO's fastest alert needs; the rules come from the same
generator as the committed ones. The same server answers without errors, so the availability
SLO beside the latency one must stay quiet.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kubemind.observability import slo
from kubemind.processes import ServerProcess, free_port, running_server, stop_process

PROMETHEUS, ALERTMANAGER = shutil.which("prometheus"), shutil.which("prometheus-alertmanager")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or ALERTMANAGER is None, reason="Debian's prometheus and prometheus-alertmanager are needed"
)

SPEC = slo.ServiceSLOs.model_validate({
    "service": "simple",
    "kind": "cv",
    "selector": {"inferenceservice": "simple", "component": "predictor"},
    "period": "1h",
    "objectives": [
        {"name": "availability", "sli": "availability", "objective": 0.9},
        {"name": "latency", "sli": "latency", "objective": 0.9, "threshold_seconds": 0.25},
    ],
    # One page: 2x the budget over 20 s and 10 s (rate() needs a few 1 s scrapes per window).
    "windows": [{"severity": "page", "long": "20s", "short": "10s", "factor": 2}],
})
REQUEST = {
    "inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16},
    ]
}


class Webhook:
    """Alertmanager's webhook receiver: keeps every notification it is sent."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.notifications.append(json.loads(body))
                hook.arrived.set()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def firing(self) -> list[dict[str, str]]:
        return [a["labels"] for n in self.notifications for a in n["alerts"] if a["status"] == "firing"]


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready:\n{log.read_text(errors='replace')}")


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server("kubemind_predictors.simple", ["--delay_seconds", "0.3"], tmp_path / "simple.log") as server:
        yield server


@pytest.fixture
def alerting(tmp_path: Path, slow_server: ServerProcess) -> Iterator[tuple[str, Webhook]]:
    """Alertmanager -> the webhook, and Prometheus scraping the server; yields Prometheus' URL."""
    hook = Webhook()
    am_port, prom_port = free_port(), free_port()
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump({
        "route": {"receiver": "hook", "group_by": ["alertname", "slo_id"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "hook", "webhook_configs": [{"url": hook.url, "send_resolved": False}]}],
    }))
    (tmp_path / "simple.rules.yaml").write_text(slo.rules_file(SPEC))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "simple.rules.yaml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{
            "job_name": "kubemind",
            # What the PodMonitor's relabelings give a pod of the InferenceService `simple`.
            "static_configs": [{"targets": [f"127.0.0.1:{slow_server.http_port}"],
                                "labels": {"inferenceservice": "simple", "component": "predictor"}}],
        }],
    }))
    alertmanager = _start([
        str(ALERTMANAGER), f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'am'}",
        f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
    ], tmp_path / "alertmanager.log")
    prometheus = _start([
        str(PROMETHEUS), f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}", "--rules.alert.resend-delay=1s",
    ], tmp_path / "prometheus.log")
    try:
        _wait_http(f"http://127.0.0.1:{am_port}/-/ready", alertmanager, tmp_path / "alertmanager.log")
        _wait_http(f"http://127.0.0.1:{prom_port}/-/ready", prometheus, tmp_path / "prometheus.log")
        yield f"http://127.0.0.1:{prom_port}", hook
    finally:
        stop_process(prometheus)
        stop_process(alertmanager)
        hook.server.shutdown()


def _traffic(url: str, stop: threading.Event) -> None:
    """Requests from four clients until stopped: each takes the model's 0.3 s."""
    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                assert http.post(f"{url}/v2/models/simple/infer", json=REQUEST).status_code == 200
    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(30)


def test_a_latency_breach_reaches_the_webhook_and_availability_stays_quiet(
    alerting: tuple[str, Webhook], slow_server: ServerProcess
) -> None:
    prometheus, hook = alerting
    stop = threading.Event()
    sender = threading.Thread(target=_traffic, args=(slow_server.http_url, stop), daemon=True)
    sender.start()
    try:
        assert hook.arrived.wait(90), "no notification: " + httpx.get(f"{prometheus}/api/v1/alerts").text
    finally:
        stop.set()
        sender.join(40)
    (alert,) = hook.firing()
    assert alert["alertname"] == slo.ALERT_NAME
    assert (alert["slo_service"], alert["slo"], alert["severity"]) == ("simple", "latency", "page")
    # Every request took 0.3 s, none failed: the latency SLI is ~100 % bad, availability 0 %.
    ratios = httpx.get(f"{prometheus}/api/v1/query", params={"query": "slo:sli_error:ratio_rate20s"}).json()
    by_slo = {r["metric"]["slo"]: float(r["value"][1]) for r in ratios["data"]["result"]}
    assert by_slo["latency"] > 0.9
    assert by_slo["availability"] == 0.0
