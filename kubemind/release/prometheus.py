"""Instant queries against Prometheus' HTTP API; every failure is a reason to hold."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx

from kubemind.release.errors import PolicyRejected, PrometheusUnavailable


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class Prometheus:
    def __init__(self, url: str, timeout: float = 5.0):
        self.url = url.rstrip("/")
        self.client = httpx.Client(timeout=timeout)

    def query(self, expr: str, field: str = "query") -> list[Sample]:
        """The instant vector `expr` evaluates to now; NaN samples (0/0, no buckets) dropped.

        A query Prometheus cannot parse is the policy's fault (PolicyRejected, naming `field`);
        anything else that goes wrong is PrometheusUnavailable."""
        try:
            answer = self.client.get(f"{self.url}/api/v1/query", params={"query": expr})
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(f"Prometheus at {self.url} cannot be reached: {exc}") from None
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if answer.status_code == 400 and body.get("errorType") == "bad_data":
            raise PolicyRejected.of([(field, f"PromQL does not parse: {body.get('error')}")])
        if answer.status_code != 200 or body.get("status") != "success":
            raise PrometheusUnavailable(f"Prometheus at {self.url} answered {answer.status_code}:"
                                        f" {body.get('error') or answer.text[:200]}")
        data = body.get("data") or {}
        results: list[dict[str, Any]]
        if data.get("resultType") == "scalar":
            results = [{"metric": {}, "value": data.get("result") or [0, "NaN"]}]
        else:
            results = data.get("result") or []
        samples = []
        for item in results:
            value = float(item["value"][1])
            if not math.isnan(value):
                samples.append(Sample(dict(item.get("metric") or {}), value))
        return samples

    def close(self) -> None:
        self.client.close()
