"""SLO specs -> rules: the committed files are current, and the spec refuses what cannot work."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kubemind.cli import main
from kubemind.observability import slo
from kubemind.observability.generate import generated_files, stale_files
from tests.manifests.conftest import REPO


def test_committed_generated_files_are_current() -> None:
    assert stale_files(REPO) == [], "run `kubemind observability generate` and commit the result"


def test_check_reports_a_hand_edited_rule_file(tmp_path, capsys) -> None:
    for path, content in generated_files(REPO).items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
    (tmp_path / "observability" / "slos").mkdir(parents=True, exist_ok=True)
    for spec in (REPO / "observability" / "slos").glob("*.yaml"):
        (tmp_path / "observability" / "slos" / spec.name).write_text(spec.read_text())
    edited = tmp_path / "observability" / "rules" / "llm-chat.rules.yaml"
    edited.write_text(edited.read_text().replace("> 0.072", "> 0.72"))

    assert main(["observability", "generate", "--check", "--root", str(tmp_path)]) == 1
    assert "llm-chat.rules.yaml" in capsys.readouterr().out


def _spec(**objective: object) -> dict[str, object]:
    return {
        "service": "svc", "kind": "cv", "selector": {"inferenceservice": "svc"},
        "objectives": [{"name": "o", "sli": "availability", "objective": 0.99, **objective}],
    }


def test_the_workbook_factors_follow_from_the_period() -> None:
    thirty = slo.ServiceSLOs.model_validate(_spec()).burn_windows()
    assert [(w.severity, w.long, w.short, w.factor) for w in thirty] == [
        ("page", "1h", "5m", 14.4), ("page", "6h", "30m", 6.0), ("ticket", "1d", "2h", 3.0), ("ticket", "3d", "6h", 1.0),
    ]
    four_weeks = slo.ServiceSLOs.model_validate({**_spec(), "period": "28d"}).burn_windows()
    assert [w.factor for w in four_weeks] == [13.44, 5.6, 2.8, 0.9333]


def test_a_latency_threshold_must_be_a_histogram_bucket() -> None:
    with pytest.raises(ValidationError, match="bucket"):
        slo.ServiceSLOs.model_validate(_spec(sli="latency", threshold_seconds=0.3))


def test_an_objective_whose_page_could_never_fire_is_refused() -> None:
    with pytest.raises(ValidationError, match="never fire"):
        slo.ServiceSLOs.model_validate(_spec(objective=0.9))  # 14.4 x 10 % > 100 % errors


def test_bucket_matchers_take_both_le_spellings() -> None:
    assert slo.le_matcher(1.0) == "1|1\\\\.0"
    assert slo.le_matcher(0.25) == "0\\\\.25"


def test_the_ttft_buckets_are_vllms() -> None:
    """A TTFT threshold is checked against vLLM's own buckets, read from its source (importing
    vLLM takes tens of seconds)."""
    import ast
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("vllm")
    if spec is None or spec.origin is None:
        pytest.skip("vLLM is not installed")
    source = Path(spec.origin).parent / "v1" / "metrics" / "buckets.py"
    tree = ast.parse(source.read_text())
    (value,) = [
        node.value for node in tree.body
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "TIME_TO_FIRST_TOKEN_BUCKETS"
    ]
    assert tuple(ast.literal_eval(value)) == slo.VLLM_TTFT_BUCKETS


def _drift_spec(service: str = "svc", **drift: object) -> slo.ServiceSLOs:
    return slo.ServiceSLOs.model_validate({**_spec(), "service": service, "drift": {"model": "m-1", **drift}})


def test_drift_tickets_need_a_full_window_and_hold_for_their_duration() -> None:
    spec = _drift_spec(drifted_features_ratio=0.3, psi=0.2, min_window_rows=50, **{"for": "1h"})
    groups = slo.rule_groups(spec)
    assert [g["name"] for g in groups] == [
        "kubemind-slo-svc-sli", "kubemind-slo-svc-meta", "kubemind-slo-svc-alerts", "kubemind-slo-svc-drift",
    ]
    ratio, psi = groups[-1]["rules"]
    assert ratio["alert"] == psi["alert"] == "SvcFeatureDrift"
    assert ratio["expr"] == (
        'kubemind_drift_drifted_features_ratio{inferenceservice="svc",model="m-1"} > 0.3\nand\n'
        'kubemind_drift_window_rows{inferenceservice="svc",model="m-1"} >= 50'
    )
    assert psi["expr"] == (
        'kubemind_drift_psi{inferenceservice="svc",model="m-1"} > 0.2\nand ignoring (feature)\n'
        'kubemind_drift_window_rows{inferenceservice="svc",model="m-1"} >= 50'
    )
    assert ratio["for"] == psi["for"] == "1h"
    assert ratio["labels"] == {"slo_service": "svc", "severity": "ticket", "drift_signal": "drifted_features_ratio"}
    assert psi["labels"] == {"slo_service": "svc", "severity": "ticket", "drift_signal": "psi"}
    assert "{{ $labels.feature }}" in psi["annotations"]["summary"]
    assert "at least 50 rows" in ratio["annotations"]["description"]


def test_drift_defaults_and_one_threshold_one_alert() -> None:
    (rule,) = slo.rule_groups(_drift_spec(psi=0.25))[-1]["rules"]
    assert rule["labels"]["drift_signal"] == "psi"
    assert (rule["for"], rule["expr"].rsplit(" ", 1)[-1]) == ("30m", "100")
    assert slo.drift_alert_name(_drift_spec("cv-to-llm-router", psi=0.25)) == "CvToLlmRouterFeatureDrift"
    assert [g["name"] for g in slo.rule_groups(slo.ServiceSLOs.model_validate(_spec()))][-1] == "kubemind-slo-svc-alerts"


@pytest.mark.parametrize(("drift", "message"), [
    ({}, "without a threshold"),
    ({"psi": 0.2, "for": "half an hour"}, "Prometheus duration"),
    ({"psi": 0.2, "model": 'm"}) or vector(1'}, "pattern"),
    ({"drifted_features_ratio": 1.0}, "less than 1"),
    ({"psi": 0.2, "min_window_rows": 0}, "greater than 0"),
    ({"psi": 0.2, "p_value": 0.01}, "Extra inputs"),
])
def test_a_drift_section_that_cannot_work_is_refused(drift: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _drift_spec(**drift)


def test_the_classifier_drift_ticket_reads_its_registered_model() -> None:
    """The drift service labels its gauges with the reference profile's model, which is the name
    the version was registered under (the one in the classifier's storageUri), and with the
    InferenceService its reference names (tests/unit/test_drift_deployment.py)."""
    import yaml

    (spec,) = [s for s in slo.load_specs(REPO / "observability" / "slos") if s.service == "cv-classifier"]
    isvc = yaml.safe_load((REPO / "inferenceservices" / "base" / "cv-classifier" / "inferenceservice.yaml").read_text())
    registered = isvc["spec"]["predictor"]["model"]["storageUri"].removeprefix("models:/").split("/")[0].split("@")[0]
    assert spec.drift is not None and spec.drift.model == registered
    manifest = slo.prometheus_rule(spec, "kubemind")
    (drift,) = [g for g in manifest["spec"]["groups"] if g["name"] == "kubemind-slo-cv-classifier-drift"]
    assert {r["alert"] for r in drift["rules"]} == {"CvClassifierFeatureDrift"}
    assert all(f'{{inferenceservice="cv-classifier",model="{registered}"}}' in r["expr"] for r in drift["rules"])
