"""The drift service as staging and prod deploy it, end to end at the unit level: the
cv-classifier predictor's payload logger sends to the drift Service, the drift service files
those events under the InferenceService its reference names, and the series it serves carry
every label the SLO spec's drift tickets select on (before, the tickets read the profile's model
alone and the events named neither it nor a service the drift service knew)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from kubemind.drift.profile import ReferenceProfile
from kubemind.drift.service import DriftMonitor, DriftSettings, create_app, reference_entry
from kubemind.observability import slo
from kubemind.payload_logger import REQUEST_TYPE, RESPONSE_TYPE, PayloadLogger
from kubemind.settings import parse_settings
from kubemind.telemetry import RequestRecord
from kubemind_workers.settings import JobWriterSettings

REPO = Path(__file__).resolve().parents[2]
SELECTOR = re.compile(r"(kubemind_drift_\w+)\{([^}]*)\}")


def _objects(env: str) -> dict[tuple[str, str], dict[str, Any]]:
    documents = yaml.safe_load_all((REPO / "inferenceservices" / "rendered" / f"{env}.yaml").read_text())
    return {(d["kind"], d["metadata"]["name"]): d for d in documents if d}


def _pixels(rng: np.random.Generator, batch: int = 2) -> dict[str, Any]:
    data = rng.integers(0, 256, (batch, 8, 8, 3)).ravel().tolist()
    return {"inputs": [{"name": "input", "datatype": "UINT8", "shape": [batch, 8, 8, 3], "data": data}]}


def _scores(rng: np.random.Generator, batch: int = 2) -> dict[str, Any]:
    return {"outputs": [{"name": "scores", "datatype": "FP32", "shape": [batch, 5], "data": rng.random(batch * 5).tolist()}]}


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_the_classifier_events_reach_the_drift_service_and_its_series_match_the_tickets(env: str) -> None:
    objects = _objects(env)
    deployment = objects[("Deployment", "kubemind-drift")]
    pod = deployment["spec"]["template"]["spec"]
    (drift_container,) = pod["containers"]
    settings = parse_settings(DriftSettings, drift_container["args"])
    (entry,) = settings.reference
    service, reference_path = reference_entry(entry)
    assert service == "cv-classifier"

    # The profile is the one stored with the version the predictor serves.
    isvc = objects[("InferenceService", "cv-classifier")]
    predictor = isvc["spec"]["predictor"]["model"]
    (initializer,) = pod["initContainers"]
    assert initializer["args"] == [predictor["storageUri"], str(reference_path)]
    registered = predictor["storageUri"].removeprefix("models:/").split("/")[0]

    # The predictor's payload logger sends to the drift Service, naming the InferenceService.
    # (In staging and prod the predictor runs the job writer, components/async-jobs: its settings.)
    assert predictor["command"][-2:] == ["-m", "kubemind_workers"]
    logger_settings = parse_settings(JobWriterSettings, ["--model_name=cv-classifier", *predictor["args"]])
    sink = urlsplit(logger_settings.log_url)
    drift_service = objects[("Service", "kubemind-drift")]
    assert sink.hostname == f"kubemind-drift.{drift_service['metadata']['namespace']}.svc.cluster.local"
    assert (sink.port or 80) in [port["port"] for port in drift_service["spec"]["ports"]]
    assert logger_settings.log_mode == "all" and logger_settings.inference_service == "cv-classifier"

    # Its events, as the predictor's logger makes them, into the drift service.
    rng = np.random.default_rng(0)
    profile = ReferenceProfile.of_payloads(registered, [_pixels(rng) for _ in range(50)] + [_scores(rng) for _ in range(50)])
    monitor = DriftMonitor({service: profile}, settings.model_copy(update={"min_window": 10}))
    events = PayloadLogger(logger_settings, CollectorRegistry())
    with TestClient(create_app(monitor)) as client:
        for index in range(20):
            record = RequestRecord(protocol="grpc", endpoint="ModelInfer", model="cv-classifier")
            for kind, body in ((REQUEST_TYPE, _pixels(rng)), (RESPONSE_TYPE, _scores(rng))):
                event = events.event(record, kind, json.dumps(body).encode(), "application/json")
                assert client.post("/", content=event.body, headers=event.http_headers()).status_code == 202, index
        exposition = client.get("/metrics").text
    series: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            series.setdefault(sample.name, []).append(sample.labels)
    assert {"inferenceservice": "cv-classifier", "model": registered, "type": "request"} in series["kubemind_drift_events_total"]

    (spec,) = [s for s in slo.load_specs(REPO / "observability" / "slos") if s.service == "cv-classifier"]
    assert spec.drift is not None
    (group,) = [g for g in slo.rule_groups(spec) if g["name"].endswith("-drift")]
    selectors = [match for rule in group["rules"] for match in SELECTOR.findall(rule["expr"])]
    assert {name for name, _ in selectors} == {"kubemind_drift_drifted_features_ratio", "kubemind_drift_psi", "kubemind_drift_window_rows"}
    for name, matchers in selectors:
        wanted = dict(re.findall(r'(\w+)="([^"]*)"', matchers))
        assert wanted["inferenceservice"] == "cv-classifier" and wanted["model"] == registered
        assert any(wanted.items() <= labels.items() for labels in series.get(name, [])), (name, wanted, series.get(name))


def test_a_bare_reference_path_names_the_service_after_the_profile(tmp_path: Path) -> None:
    """`--reference PATH` (no SERVICE=): the service is the profile's model, as before; events
    naming it by Ce-Modelname or Ce-Inferenceservicename find it, others are not its."""
    assert reference_entry("/mnt/models") == (None, Path("/mnt/models"))
    assert reference_entry("cv-classifier=/mnt/models/x") == ("cv-classifier", Path("/mnt/models/x"))
    rng = np.random.default_rng(1)
    first = ReferenceProfile.of_payloads("m-1", [_pixels(rng)])
    second = ReferenceProfile.of_payloads("m-2", [_pixels(rng)])
    monitor = DriftMonitor({"m-1": first, "svc-b": second}, DriftSettings())
    assert monitor.service_of({"ce-inferenceservicename": "svc-b", "ce-modelname": "m-1"}) == "svc-b"
    assert monitor.service_of({"ce-inferenceservicename": "other", "ce-modelname": "m-1"}) == "m-1"
    assert monitor.service_of({"ce-inferenceservicename": "other", "ce-modelname": "other"}) is None
    assert (monitor.lookup("m-2"), monitor.lookup("svc-b"), monitor.lookup("nope")) == ("svc-b", "svc-b", None)
