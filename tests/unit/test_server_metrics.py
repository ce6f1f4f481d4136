"""A server's metrics live on its own registry: the Triton queue collector a model declares shows
on that server's /metrics exposition, once, and never on the process-global registry."""

from __future__ import annotations

from prometheus_client import REGISTRY

from kubemind.telemetry import ServerMetrics
from kubemind_predictors.triton.metrics import TritonQueueMetrics

TRITON_EXPOSITION = """\
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="simple",version="1"} 2500000
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="simple",version="1"} 3
"""


class ModelWith:
    def __init__(self, collector: TritonQueueMetrics):
        self.collector = collector

    def collectors(self) -> tuple[TritonQueueMetrics, ...]:
        return (self.collector,)


def test_model_collectors_go_on_the_server_registry_once_and_not_the_global_one() -> None:
    shared = TritonQueueMetrics("http://127.0.0.1:1/metrics")
    shared.update(TRITON_EXPOSITION)
    metrics = ServerMetrics()
    # Two models sharing one Triton connection declare the same collector.
    metrics.register_model_collectors([ModelWith(shared), ModelWith(shared), object()])

    text = metrics.exposition().decode()
    assert text.count('kubemind_triton_queue_duration_seconds_total{model="simple"} 2.5') == 1
    assert 'kubemind_triton_pending_requests{model="simple"} 3.0' in text
    assert REGISTRY.get_sample_value("kubemind_triton_pending_requests", {"model": "simple"}) is None
    # A second server in the same process has its own registry: no duplicate-timeseries error.
    ServerMetrics().register_model_collectors([ModelWith(shared)])


def test_request_metrics_carry_the_revision_knative_sets(monkeypatch) -> None:
    from kubemind.settings import ComponentSettings
    from kubemind.telemetry import RequestRecord, finish_request

    monkeypatch.setenv("K_REVISION", "simple-predictor-00002")
    settings = ComponentSettings()
    assert settings.revision == "simple-predictor-00002"
    metrics = ServerMetrics(settings.revision)
    finish_request(metrics, RequestRecord("rest", "infer", model="simple"), log_requests=False)
    labels = {"model": "simple", "endpoint": "infer", "protocol": "rest", "revision": "simple-predictor-00002"}
    assert metrics.registry.get_sample_value("kubemind_requests_total", {**labels, "code": "200"}) == 1
    assert metrics.registry.get_sample_value("kubemind_request_duration_seconds_count", labels) == 1


def test_a_classifier_s_top_classes_are_counted_by_revision() -> None:
    from kubemind.telemetry import CURRENT_RECORD, RequestRecord, count_predictions, finish_request

    metrics = ServerMetrics("cv-predictor-00003")
    record = RequestRecord("rest", "infer", model="cv")
    token = CURRENT_RECORD.set(record)
    try:
        count_predictions(["281", "281", "7"])
    finally:
        CURRENT_RECORD.reset(token)
    count_predictions(["outside a request: ignored"])
    finish_request(metrics, record, log_requests=False)
    sample = metrics.registry.get_sample_value
    labels = {"model": "cv", "revision": "cv-predictor-00003"}
    assert sample("kubemind_prediction_class_total", {**labels, "class": "281"}) == 2
    assert sample("kubemind_prediction_class_total", {**labels, "class": "7"}) == 1
