"""The drift service: python -m kubemind.drift --reference [SERVICE=]PATH[,[SERVICE=]PATH...]

It receives the payload logger's CloudEvents over HTTP (point a server's `--log_url`, or an
InferenceService's `logger.url`, or a Knative trigger at it), keeps the last `window_size`
feature rows per service, and compares them with that service's reference profile (see
kubemind.drift.statistics for which test when). Scores are computed when /metrics is scraped
(or the report asked for), never per event, so a burst of events costs only their parsing.

A reference names the InferenceService whose events it measures (`cv-classifier=/mnt/models`):
an event is that service's when its `Ce-Inferenceservicename` (or `Ce-Modelname`) is the name.
Every series carries both `inferenceservice` (that name) and `model` (the profile's: the name
the version was registered under), which is what the SLO spec's drift tickets select on. A bare
PATH names the service after the profile's model.

Endpoints: `POST /` (CloudEvents, binary mode), `GET /metrics`, `GET /v1/drift/{model}` (the
scores and both distributions, what `kubemind drift report` plots), `GET /v2/health/ready`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import signal
import sys
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubemind.drift.features import Row, assembled_stream, rows_of, rows_of_grpc
from kubemind.drift.profile import ReferenceProfile
from kubemind.drift.statistics import DriftScore, Thresholds, score
from kubemind.errors import InvalidSettings
from kubemind.payload_logger import REQUEST_TYPE, RESPONSE_TYPE
from kubemind.settings import ComponentSettings, parse_settings
from kubemind.telemetry import configure_logging

logger = logging.getLogger("kubemind.drift")


class DriftSettings(ComponentSettings):
    """The drift service."""

    model_config = SettingsConfigDict(env_prefix="KUBEMIND_DRIFT_")

    reference: list[str] = Field(default_factory=list)
    """Reference profiles, one per service: `SERVICE=PATH` (PATH: drift-reference.json or the
    model folder holding it; SERVICE: the InferenceService whose events it measures) or a bare
    PATH (the service is named after the profile's model); comma-separated."""

    window_size: int = Field(default=500, gt=0)
    """Feature rows per model the current window keeps (the newest)."""

    min_window: int = Field(default=30, gt=0)
    """Rows a window needs before it is scored."""

    large_window: int = Field(default=1000, gt=0)
    """From this many rows on, distances (Wasserstein, Jensen-Shannon) replace tests (KS, chi²)."""

    p_value: float = Field(default=0.01, gt=0, lt=1)
    """A test's p-value under this is drift."""

    wasserstein_threshold: float = Field(default=0.1, gt=0)
    """Wasserstein distance (in reference standard deviations) over this is drift."""

    jensen_shannon_threshold: float = Field(default=0.1, gt=0)
    """Jensen-Shannon distance (base 2) over this is drift."""


def reference_entry(entry: str) -> tuple[str | None, Path]:
    """`SERVICE=PATH` or `PATH` (one --reference item) as (service or None, path)."""
    service, separator, path = entry.partition("=")
    if separator and service and "/" not in service:
        return service, Path(path)
    return None, Path(entry)


def load_references(entries: Sequence[str]) -> dict[str, ReferenceProfile]:
    """--reference items as {service: profile} (a bare PATH: the service is the profile's model)."""
    profiles: dict[str, ReferenceProfile] = {}
    for entry in entries:
        service, path = reference_entry(entry)
        profile = ReferenceProfile.load(path)
        name = service or profile.model
        if name in profiles:
            raise InvalidSettings(f"--reference: two profiles for service '{name}'")
        profiles[name] = profile
    return profiles


class DriftMonitor:
    """Windows, scores and metrics of every service with a reference profile."""

    def __init__(self, profiles: Mapping[str, ReferenceProfile], settings: DriftSettings):
        if not profiles:
            raise ValueError("the drift service needs at least one reference profile")
        self.settings = settings
        self.profiles = dict(profiles)
        """service (InferenceService) -> the reference profile its events are measured against"""
        self.thresholds = Thresholds(settings.large_window, settings.p_value, settings.wasserstein_threshold, settings.jensen_shannon_threshold)
        self.windows: dict[str, dict[str, deque[float | str]]] = {
            service: {name: deque(maxlen=settings.window_size) for name in profile.features} for service, profile in self.profiles.items()
        }
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter("kubemind_drift_events", "Payload events taken into the windows, by service, model and type.",
                              ["inferenceservice", "model", "type"], registry=self.registry)  # fmt: skip
        self.rejected = Counter("kubemind_drift_events_rejected", "Payload events not used, by reason.", ["reason"], registry=self.registry)
        self.registry.register(self)

    def service_of(self, headers: dict[str, str]) -> str | None:
        """The service an event belongs to: its Ce-Inferenceservicename, else its Ce-Modelname,
        naming a service; else the one service when there is one."""
        for key in ("ce-inferenceservicename", "ce-modelname"):
            if headers.get(key) in self.profiles:
                return headers[key]
        return next(iter(self.profiles)) if len(self.profiles) == 1 else None

    def lookup(self, name: str) -> str | None:
        """The service `name` is, or the one whose profile's model it is (the report's MODEL)."""
        if name in self.profiles:
            return name
        return next((service for service, profile in self.profiles.items() if profile.model == name), None)

    def add(self, service: str, rows: Sequence[Row]) -> None:
        window = self.windows[service]
        for row in rows:
            for name, value in row.items():
                if name in window:
                    window[name].append(value)

    def scores(self, service: str) -> list[DriftScore]:
        """Every feature's score. Tests use a Bonferroni-corrected p-value (the threshold over
        the number of features): with 30 features at 0.01 each, some feature of an unchanged
        stream would 'drift' one time in four."""
        features = self.profiles[service].features
        thresholds = dataclasses.replace(self.thresholds, p_value=self.thresholds.p_value / max(1, len(features)))
        found = []
        for name, profile in features.items():
            values = list(self.windows[service][name])
            if len(values) >= self.settings.min_window:
                result = score(profile, values, thresholds)
                if result is not None:
                    found.append(result)
        return found

    def report(self, service: str) -> dict[str, Any]:
        by_feature = {s.feature: s for s in self.scores(service)}
        features = {}
        for name, profile in self.profiles[service].features.items():
            current = list(self.windows[service][name])
            entry: dict[str, Any] = {"kind": profile.kind, "current": current, "count": len(current)}
            entry["reference"] = profile.sample if profile.kind == "numeric" else dict(zip([*profile.categories, "(unseen)"], profile.proportions, strict=True))
            found = by_feature.get(name)
            if found is not None:
                entry.update(method=found.method, score=found.score, p_value=found.p_value, psi=found.psi, drifted=found.drifted)
            features[name] = entry
        drifted = [s for s in by_feature.values() if s.drifted]
        return {"model": self.profiles[service].model, "inferenceservice": service, "window_size": self.settings.window_size, "features": features,
                "drifted_features": sorted(s.feature for s in drifted),
                "drifted_share": len(drifted) / len(by_feature) if by_feature else 0.0}  # fmt: skip

    # -- the Prometheus collector: computed at scrape time ----------------------------------------
    def collect(self) -> Iterator[Metric]:
        per = ["inferenceservice", "model"]
        score_family = GaugeMetricFamily("kubemind_drift_score", "Drift of a feature: the test statistic (ks, chi2) or the distance (wasserstein, jensen_shannon).", labels=[*per, "feature", "method"])
        p_family = GaugeMetricFamily("kubemind_drift_p_value", "p-value of a feature's drift test (small windows).", labels=[*per, "feature", "method"])
        psi_family = GaugeMetricFamily("kubemind_drift_psi", "Population stability index of a feature against its reference.", labels=[*per, "feature"])
        detected = GaugeMetricFamily("kubemind_drift_detected", "1 when a feature's distribution drifted past its threshold.", labels=[*per, "feature"])
        share = GaugeMetricFamily("kubemind_drift_drifted_features_ratio", "Share of a model's scored features that drifted.", labels=per)
        rows = GaugeMetricFamily("kubemind_drift_window_rows", "Feature rows in a model's current window (its fullest feature).", labels=per)
        for service, profile in self.profiles.items():
            labels = [service, profile.model]
            found = self.scores(service)
            for result in found:
                score_family.add_metric([*labels, result.feature, result.method], result.score)
                if result.p_value is not None:
                    p_family.add_metric([*labels, result.feature, result.method], result.p_value)
                psi_family.add_metric([*labels, result.feature], result.psi)
                detected.add_metric([*labels, result.feature], 1.0 if result.drifted else 0.0)
            share.add_metric(labels, sum(r.drifted for r in found) / len(found) if found else 0.0)
            rows.add_metric(labels, max((len(w) for w in self.windows[service].values()), default=0))
        yield from (score_family, p_family, psi_family, detected, share, rows)

    def describe(self) -> list[Metric]:
        return []


def rows_of_event(headers: dict[str, str], body: bytes) -> list[Row]:
    content_type = headers.get("content-type", "application/json")
    response = headers.get("ce-type") == RESPONSE_TYPE
    if content_type.startswith("application/x-protobuf"):
        return rows_of_grpc(body, response)
    if content_type.startswith("text/event-stream"):  # a streamed reply, logged whole when it ended
        return rows_of(assembled_stream(body))
    return rows_of(json.loads(body))


def create_app(monitor: DriftMonitor) -> Starlette:
    async def receive(request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if headers.get("ce-type") not in (REQUEST_TYPE, RESPONSE_TYPE):
            monitor.rejected.labels("not_an_inference_event").inc()
            return Response(status_code=400)
        service = monitor.service_of(headers)
        if service is None:
            monitor.rejected.labels("no_reference").inc()
            return Response(status_code=202)  # not ours to measure; redelivering cannot help
        try:
            rows = rows_of_event(headers, await request.body())
        except Exception:
            monitor.rejected.labels("undecodable").inc()
            return Response(status_code=202)
        monitor.add(service, rows)
        kind = "request" if headers["ce-type"] == REQUEST_TYPE else "response"
        monitor.events.labels(service, monitor.profiles[service].model, kind).inc()
        return Response(status_code=202)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(monitor.registry), media_type="text/plain; version=0.0.4")

    async def report(request: Request) -> Response:
        name = request.path_params["model"]
        service = monitor.lookup(name)
        if service is None:
            return JSONResponse({"error": f"no reference profile for service or model '{name}'"}, status_code=404)
        return JSONResponse(monitor.report(service))

    async def ready(request: Request) -> Response:
        return JSONResponse({"ready": True})

    return Starlette(routes=[
        Route("/", receive, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/drift/{model}", report, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2/health/live", ready, methods=["GET"]),
    ])  # fmt: skip


async def serve(settings: DriftSettings) -> None:
    monitor = DriftMonitor(load_references(settings.reference), settings)
    config = uvicorn.Config(create_app(monitor), host=settings.host, port=settings.http_port, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    served = ", ".join(f"{service} ({profile.model})" for service, profile in monitor.profiles.items())
    logger.info("drift service for %s on http://%s:%d", served, settings.host, settings.http_port)
    await server.serve()


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(DriftSettings, argv, prog="python -m kubemind.drift")
    configure_logging()
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
