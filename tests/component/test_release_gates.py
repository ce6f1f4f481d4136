"""The gates against a real Prometheus scraping real kubemind servers: a good revision passes,
an erroring or slow one fails with the value that failed, and missing evidence holds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kubemind.processes import ServerProcess, spawn_server, wait_until_ready
from kubemind.release.analysis import FAIL, HOLD, PASS, evaluate
from kubemind.release.policy import parse_policy
from kubemind.release.prometheus import Prometheus
from tests.component.prometheus_fixtures import PrometheusServer, wait_until

BODY = {"inputs": [{"name": n, "datatype": "INT32", "shape": [1, 16], "data": list(range(16))}
                   for n in ("INPUT0", "INPUT1")]}
REVISIONS = {"simple-predictor-good": (), "simple-predictor-erroring": ("--error_percent=30",),
             "simple-predictor-slow": ("--delay_seconds=0.3",), "simple-predictor-good2": ()}


def policy(**analysis: object) -> dict[str, object]:
    return {
        "apiVersion": "kubemind.io/v1alpha1", "kind": "RolloutPolicy",
        "metadata": {"name": "p", "namespace": "kubemind"},
        "spec": {
            "canary": {"steps": [{"weight": 50}]},
            "analysis": {"intervalSeconds": 1, "windowSeconds": 15, "minSamples": 10, **analysis},
            "gates": [{"name": "success", "metric": "successRate", "min": 0.95},
                      {"name": "p90", "metric": "latency", "quantile": 0.9, "max": 0.2},
                      {"name": "p90-vs-primary", "metric": "latency", "quantile": 0.9, "maxRatio": 5}],
        },
    }


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    folder = tmp_path_factory.mktemp("servers")
    started = {rev: spawn_server("kubemind_predictors.simple", ["--model_name=simple", *args],
                                 folder / f"{rev}.log", env={"K_REVISION": rev})
               for rev, args in REVISIONS.items()}
    try:
        for server in started.values():
            wait_until_ready(server.http_url, server.process, 120, server.log_path)
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def prometheus(servers: dict[str, ServerProcess], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"))
    server.set_targets([f"127.0.0.1:{s.http_port}" for s in servers.values()])
    server.start()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                for s in servers.values():
                    client.post(f"{s.http_url}/v2/models/simple/infer", json=BODY)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        wait_until(lambda: all((server.scraped(f'sum(increase(kubemind_requests_total{{revision="{rev}"}}[5s]))')
                                or 0) >= 10 for rev in REVISIONS), "scraped with samples from every revision", 120)
        yield server
    finally:
        stop.set()
        thread.join(30)
        server.stop()


def test_a_good_candidate_passes_every_gate(prometheus: PrometheusServer) -> None:
    verdict = evaluate(Prometheus(prometheus.url), parse_policy(policy()), "simple-predictor-good",
                       "simple-predictor-good2")
    assert verdict.outcome == PASS, verdict
    assert verdict.values["success"]["value"] == 1.0 and verdict.values["samples"] >= 10


def test_an_erroring_candidate_fails_on_its_success_rate(prometheus: PrometheusServer) -> None:
    verdict = evaluate(Prometheus(prometheus.url), parse_policy(policy()), "simple-predictor-good",
                       "simple-predictor-erroring")
    assert verdict.outcome == FAIL and "success" in verdict.reason, verdict
    assert 0.4 < verdict.values["success"]["value"] < 0.95


def test_a_slow_candidate_fails_on_latency_absolute_and_relative(prometheus: PrometheusServer) -> None:
    verdict = evaluate(Prometheus(prometheus.url), parse_policy(policy()), "simple-predictor-good",
                       "simple-predictor-slow")
    assert verdict.outcome == FAIL, verdict
    assert not verdict.values["p90"]["pass"] and not verdict.values["p90-vs-primary"]["pass"]
    assert verdict.values["p90"]["value"] >= 0.25 and verdict.values["success"]["pass"]


def test_missing_evidence_holds(prometheus: PrometheusServer) -> None:
    client = Prometheus(prometheus.url)
    few = evaluate(client, parse_policy(policy(minSamples=10**9)), "simple-predictor-good", "simple-predictor-good2")
    assert few.outcome == HOLD and "fewer than minSamples" in few.reason
    unknown = evaluate(client, parse_policy(policy()), "simple-predictor-good", "simple-predictor-nope")
    assert unknown.outcome == HOLD and "no evidence" in unknown.reason
    down = evaluate(Prometheus("http://127.0.0.1:9"), parse_policy(policy()), "simple-predictor-good",
                    "simple-predictor-good2")
    assert down.outcome == HOLD and "cannot be reached" in down.reason


def test_a_query_prometheus_refuses_is_the_policy_s_fault(prometheus: PrometheusServer, tmp_path: Path) -> None:
    """Without promtool the controller still refuses unparsable PromQL: Prometheus says bad_data."""
    from kubemind.release.errors import PolicyRejected

    body = policy()
    body["spec"]["gates"][0]["query"] = "sum(rate(x[${window}])"  # type: ignore[index]
    with pytest.raises(PolicyRejected) as refused:
        evaluate(Prometheus(prometheus.url), parse_policy(body, check_promql=False), "simple-predictor-good",
                 "simple-predictor-good2")
    assert refused.value.problems[0][0] == "spec.gates[0].query"
