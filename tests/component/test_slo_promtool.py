"""The generated SLO rules under Prometheus' own rule engine (`promtool test rules`).

For every alert of every service: a synthetic series just above the alert's burn rate makes it
fire (and only it, with the slower alerts its ratio also exceeds); one just below keeps it
quiet; a healthy series (half the budget) fires nothing over three days, even with failing
health checks beside it; and the page alert resets once the short window is clean, although
the long window still burns: the point of the second window. The drift tickets of a spec's
`drift:` section fire once held for `for:` over a window with enough rows, and only then.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.utils import floatToGoString

from kubemind.observability import slo
from kubemind.observability.generate import RULES_DIR, SLO_DIR
from tests.manifests.conftest import REPO

SPECS = slo.load_specs(REPO / SLO_DIR)
RATE = 120.0  # events per minute: enough that one bad event in a window is not a breach

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus) missing")


def _counter(segments: list[tuple[int, float]]) -> str:
    """promtool's expanding notation for a counter growing by `per_step` for `steps` samples."""
    parts, value = [], 0.0
    for minutes, per_minute in segments:
        parts.append(f"{value:g}+{per_minute:g}x{minutes}")
        value += per_minute * minutes
    return " ".join(parts)


def _events(spec: slo.ServiceSLOs, objective: slo.Objective) -> tuple[dict[str, str], dict[str, str]]:
    """(bad series, good series) for an SLI: metric name and labels, as the code exports them."""
    target = dict(spec.selector)
    if objective.sli == "availability":
        name = "kubemind_requests_total"
        base = {**target, "endpoint": objective.endpoints[0], "protocol": "rest", "model": "m"}
        return {"__name__": name, **base, "code": "500"}, {"__name__": name, **base, "code": "200"}
    if objective.sli in ("latency", "ttft"):
        # bad = _count - _bucket{le=threshold}: the count series carries every event, the bucket
        # the good ones. The (bad, good) pair is mapped onto (count, bucket) in _series.
        name = "kubemind_request_duration_seconds" if objective.sli == "latency" else "vllm:time_to_first_token_seconds"
        base = {**target, "endpoint": objective.endpoints[0], "protocol": "rest", "model": "m"}
        if objective.sli == "ttft":
            base = {**target, "model_name": "m", "engine": "0"}
        assert objective.threshold_seconds is not None
        return {"__name__": f"{name}_count", **base}, {
            "__name__": f"{name}_bucket", **base, "le": floatToGoString(objective.threshold_seconds)
        }
    by_service = {
        "embedder": (
            {"__name__": "nv_inference_request_failure", **target, "model": "minilm", "version": "2"},
            {"__name__": "nv_inference_request_success", **target, "model": "minilm", "version": "2"},
        ),
        "cv-worker": (
            {"__name__": "kubemind_jobs_outcomes_total", **target, "model": "m", "outcome": "dead_lettered"},
            {"__name__": "kubemind_jobs_outcomes_total", **target, "model": "m", "outcome": "stored"},
        ),
    }
    return by_service[spec.service]


def _series(spec: slo.ServiceSLOs, objective: slo.Objective, segments: list[tuple[int, float]]) -> list[dict[str, str]]:
    """Input series with the error ratio of each (minutes, ratio) segment."""
    bad, good = _events(spec, objective)
    histogram = objective.sli in ("latency", "ttft")
    first = [(m, RATE if histogram else RATE * r) for m, r in segments]  # count, or bad
    second = [(m, RATE * (1 - r)) for m, r in segments]  # good
    return [
        {"series": _text(bad), "values": _counter(first)},
        {"series": _text(good), "values": _counter(second)},
    ]


def _text(labels: dict[str, str]) -> str:
    name = labels["__name__"]
    rest = ",".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__")
    return f"{name}{{{rest}}}"


def _alert(spec: slo.ServiceSLOs, objective: slo.Objective, burn: slo.BurnWindow) -> dict[str, Any]:
    """The alert promtool should report: labels, and the annotations the rule file holds."""
    groups = yaml.safe_load((REPO / RULES_DIR / f"{spec.service}.rules.yaml").read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"] if r.get("alert") == slo.ALERT_NAME):
        labels = rule["labels"]
        if labels["slo"] == objective.name and labels["long_window"] == burn.long:
            return {"exp_labels": labels, "exp_annotations": rule["annotations"]}
    raise AssertionError(f"no alert for {objective.name} over {burn.long}")


def _firing(spec: slo.ServiceSLOs, objective: slo.Objective, ratio: float, slower_than: slo.BurnWindow) -> list[dict[str, Any]]:
    """The alerts a constant `ratio` fires: those whose threshold it exceeds, among the window
    under test and slower ones (faster windows have too few samples at this step to evaluate)."""
    return [
        _alert(spec, objective, b) for b in spec.burn_windows()
        if ratio > b.factor * objective.budget and slo.seconds(b.short) >= slo.seconds(slower_than.short)
    ]


def _minutes(duration: str) -> int:
    return int(slo.seconds(duration) // 60)


def _tests(spec: slo.ServiceSLOs, burn: slo.BurnWindow) -> list[dict[str, Any]]:
    """The tests of one alert window, sampled at a fifth of its short window. The objectives of
    a service read different metrics, so each scenario runs them side by side in one test."""
    step = _minutes(burn.short) // 5
    long_m, short_m = _minutes(burn.long), _minutes(burn.short)
    objectives = spec.objectives

    def series(objective: slo.Objective, segments: list[tuple[int, float]]) -> list[dict[str, str]]:
        return _series(spec, objective, [(m // step, r) for m, r in segments])

    def at(factor: float) -> dict[str, Any]:
        ratios = {o.name: min(factor * burn.factor * o.budget, 0.999) for o in objectives}
        return {
            "name": f"{factor}x the {burn.long} alert's threshold",
            "interval": f"{step}m",
            "input_series": [s for o in objectives for s in series(o, [(long_m + short_m, ratios[o.name])])],
            "alert_rule_test": [{
                "eval_time": f"{long_m}m",
                "alertname": slo.ALERT_NAME,
                "exp_alerts": [a for o in objectives for a in _firing(spec, o, ratios[o.name], slower_than=burn)],
            }],
        }

    healthy = [s for o in objectives for s in series(o, [(long_m + short_m, 0.5 * o.budget)])]
    if any(o.sli == "availability" for o in objectives):
        # Failing readiness probes (a pod starting) are not inference requests.
        probe = {**spec.selector, "endpoint": "ready", "protocol": "rest", "model": "m", "code": "503"}
        healthy.append({
            "series": _text({"__name__": "kubemind_requests_total", **probe}),
            "values": _counter([((long_m + short_m) // step, RATE)]),
        })
    tests = [at(1.1), at(0.9), {
        "name": f"healthy (half the budget) over {burn.long}",
        "interval": f"{step}m",
        "input_series": healthy,
        "alert_rule_test": [
            {"eval_time": f"{m}m", "alertname": slo.ALERT_NAME, "exp_alerts": []}
            for m in (short_m, long_m, long_m + short_m)
        ],
    }]
    if burn == spec.burn_windows()[0]:
        clean = long_m + 2 * short_m
        firing = [a for o in objectives for a in _firing(spec, o, 0.999, slower_than=burn)]
        tests.append({
            "name": "the page resets when the short window is clean",
            "interval": f"{step}m",
            "input_series": [s for o in objectives for s in series(o, [(long_m, 0.999), (2 * short_m, 0.0)])],
            "promql_expr_test": [{
                # The long window still burns above the page threshold...
                "expr": f'slo:sli_error:ratio_rate{burn.long}{{slo="{o.name}"}} > bool {burn.factor * o.budget!r}',
                "eval_time": f"{clean}m",
                "exp_samples": [{"labels": f'{{slo="{o.name}",slo_id="{spec.service}-{o.name}",slo_service="{spec.service}"}}', "value": 1}],
            } for o in objectives],
            "alert_rule_test": [
                {"eval_time": f"{long_m}m", "alertname": slo.ALERT_NAME, "exp_alerts": firing},
                # ...but the page is over (the slower alerts sample too coarsely here to say).
                {"eval_time": f"{clean}m", "alertname": slo.ALERT_NAME,
                 "exp_alerts": [a for a in firing if a["exp_labels"]["long_window"] != burn.long]},
            ],
        })
    return tests


@pytest.mark.parametrize("spec", SPECS, ids=[s.service for s in SPECS])
def test_rules_pass_promtool_check(spec: slo.ServiceSLOs) -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", str(REPO / RULES_DIR / f"{spec.service}.rules.yaml")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


ALERTS = [(spec, burn) for spec in SPECS for burn in spec.burn_windows()]


@pytest.mark.parametrize(("spec", "burn"), ALERTS, ids=[f"{s.service}-{b.long}" for s, b in ALERTS])
def test_each_alert_fires_on_a_breach_and_stays_quiet_otherwise(spec: slo.ServiceSLOs, burn: slo.BurnWindow, tmp_path: Path) -> None:
    unit = tmp_path / f"{spec.service}-{burn.long}.test.yaml"
    unit.write_text(yaml.safe_dump({
        "rule_files": [str(REPO / RULES_DIR / f"{spec.service}.rules.yaml")],
        "evaluation_interval": f"{_minutes(burn.short) // 5}m",
        # Recordings before the alerts that read them: at steps above the 5m lookback an alert
        # evaluated first would see no recording at all.
        "group_eval_order": [g["name"] for g in slo.rule_groups(spec)],
        "tests": _tests(spec, burn),
    }, sort_keys=False))
    result = subprocess.run(["promtool", "test", "rules", str(unit)], capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


# --- drift tickets ---------------------------------------------------------------------------

DRIFTED = [spec for spec in SPECS if spec.drift is not None]
DRIFT_TARGET = {"job": "kubemind-drift", "instance": "10.0.0.7:8080"}  # what the scrape adds
FEATURES = ("pixels.mean", "pixels.std", "prediction:top1")


def _gauge(name: str, values: list[float], target: dict[str, str], **labels: str) -> dict[str, str]:
    return {"series": _text({"__name__": name, **labels, **target}), "values": " ".join(f"{v:g}" for v in values)}


def _drift_rule(spec: slo.ServiceSLOs, signal: str) -> dict[str, Any]:
    groups = yaml.safe_load((REPO / RULES_DIR / f"{spec.service}.rules.yaml").read_text())["groups"]
    (rule,) = [
        r for g in groups for r in g["rules"]
        if r.get("alert") == slo.drift_alert_name(spec) and r["labels"]["drift_signal"] == signal
    ]
    return rule


def _drift_tests(spec: slo.ServiceSLOs) -> list[dict[str, Any]]:
    """Scenarios of one service's drift tickets, one sample a minute over twice `for:`."""
    drift = spec.drift
    assert drift is not None
    hold = _minutes(drift.for_)
    length = 2 * hold + 10
    name = slo.drift_alert_name(spec)
    model = drift.model
    service = slo.drift_labels(spec, drift)["inferenceservice"]
    enough, few = drift.min_window_rows, drift.min_window_rows - 1
    # Values the annotations render: humanizePercentage(0.75) and printf "%.2f" of the PSI.
    high_ratio = 0.75 if drift.drifted_features_ratio is None else round((drift.drifted_features_ratio + 1) / 2, 4)
    high_psi = 0.4 if drift.psi is None else round(drift.psi * 1.6, 4)
    quiet_psi = 0.0 if drift.psi is None else drift.psi  # at the threshold: not above it

    def constant(value: float, minutes: int = length) -> list[float]:
        return [value] * (minutes + 1)

    def inputs(
        model: str, ratio: list[float], rows: list[float], psi: dict[str, float], target: dict[str, str] = DRIFT_TARGET,
        service: str = service,
    ) -> list[dict[str, str]]:
        labels = {"inferenceservice": service, "model": model}  # the drift service's (--reference SERVICE=PATH)
        series = [
            _gauge("kubemind_drift_drifted_features_ratio", ratio, target, **labels),
            _gauge("kubemind_drift_window_rows", rows, target, **labels),
        ]
        series += [_gauge("kubemind_drift_psi", constant(psi.get(f, quiet_psi / 2)), target, **labels, feature=f) for f in FEATURES]
        return series

    def expected(signal: str, value_text: str, **extra: str) -> dict[str, Any]:
        rule = _drift_rule(spec, signal)
        annotations = {
            key: text.replace("{{ $value | humanizePercentage }}", value_text)
                     .replace('{{ printf "%.2f" $value }}', value_text)
                     .replace("{{ $labels.feature }}", extra.get("feature", ""))
            for key, text in rule["annotations"].items()
        }
        return {"exp_labels": {"inferenceservice": service, "model": model, **extra, **DRIFT_TARGET, **rule["labels"]},
                "exp_annotations": annotations}  # fmt: skip

    def check(*at: tuple[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        return [{"eval_time": f"{m}m", "alertname": name, "exp_alerts": alerts} for m, alerts in at]

    def case(title: str, series: list[dict[str, str]], *at: tuple[int, list[dict[str, Any]]]) -> dict[str, Any]:
        return {"name": title, "interval": "1m", "input_series": series, "alert_rule_test": check(*at)}

    tests = []
    if drift.drifted_features_ratio is not None:
        threshold = drift.drifted_features_ratio
        firing = [expected("drifted_features_ratio", f"{high_ratio * 100:g}%")]
        broken = [*constant(high_ratio, hold // 2), 0.0, *constant(high_ratio, length - hold // 2 - 2)]
        tests += [
            case("drifted share above the threshold, window exactly full enough: fires after `for`",
                 inputs(model, constant(high_ratio), constant(enough), {}),
                 (hold - 1, []), (hold + 1, firing), (length, firing)),
            case("drifted share above the threshold, one row short of the minimum: quiet",
                 inputs(model, constant(high_ratio), constant(few), {}),
                 (hold + 1, []), (length, [])),
            case("drifted share at the threshold (not above): quiet",
                 inputs(model, constant(threshold), constant(enough), {}),
                 (hold + 1, []), (length, [])),
            case("drifted share below the threshold: quiet",
                 inputs(model, constant(threshold / 2), constant(enough), {}),
                 (length, [])),
            case("one clean scrape restarts `for`",
                 inputs(model, broken, constant(enough), {}),
                 (hold + 1, []), (hold // 2 + 1 + hold + 1, firing)),
            case("the window empties (a restart): the ticket resolves",
                 inputs(model, constant(high_ratio), [*constant(enough, hold + 5), *constant(3, length - hold - 6)], {}),
                 (hold + 1, firing), (hold + 7, [])),
        ]
    if drift.psi is not None:
        shifted = FEATURES[0]
        firing = [expected("psi", f"{high_psi:.2f}", feature=shifted)]
        low_ratio = [0.0] * (length + 1)
        tests += [
            case("one feature's PSI above the threshold with enough rows: fires for that feature",
                 inputs(model, low_ratio, constant(enough), {shifted: high_psi}),
                 (hold - 1, []), (hold + 1, firing)),
            case("PSI above the threshold, one row short of the minimum: quiet",
                 inputs(model, low_ratio, constant(few), {shifted: high_psi}),
                 (hold + 1, []), (length, [])),
            case("PSI at the threshold (not above): quiet",
                 inputs(model, low_ratio, constant(enough), {shifted: drift.psi}),
                 (length, [])),
        ]
    tests += [
        case(
            "another model drifting is not this service's ticket",
            inputs(f"not-{model}", constant(0.99), constant(10 * enough), dict.fromkeys(FEATURES, 10.0)),
            (hold + 1, []), (length, []),
        ),
        case(
            "the same model drifting in another service's window is not this service's ticket",
            inputs(model, constant(0.99), constant(10 * enough), dict.fromkeys(FEATURES, 10.0), service=f"not-{service}"),
            (hold + 1, []), (length, []),
        ),
        case(
            # Each replica of the drift service keeps its own window: one's full window does not
            # make another's few rows worth a ticket (the match keeps the scrape's labels).
            "a second drift replica's near-empty window drifting, beside a full quiet one: quiet",
            [
                *inputs(model, constant(0.0), constant(enough), {}),
                *inputs(model, constant(0.99), constant(few), dict.fromkeys(FEATURES, 10.0), {**DRIFT_TARGET, "instance": "10.0.0.8:8080"}),
            ],
            (hold + 1, []), (length, []),
        ),
    ]
    return tests


def test_a_spec_has_drift_tickets() -> None:
    """So that the drift tests below cannot vanish with an edit of the specs."""
    assert "cv-classifier" in [spec.service for spec in DRIFTED]


@pytest.mark.parametrize("spec", DRIFTED, ids=[s.service for s in DRIFTED])
def test_drift_tickets_fire_on_a_held_drift_over_a_full_window_only(spec: slo.ServiceSLOs, tmp_path: Path) -> None:
    unit = tmp_path / f"{spec.service}-drift.test.yaml"
    unit.write_text(yaml.safe_dump({
        "rule_files": [str(REPO / RULES_DIR / f"{spec.service}.rules.yaml")],
        "evaluation_interval": "1m",
        "tests": _drift_tests(spec),
    }, sort_keys=False))
    result = subprocess.run(["promtool", "test", "rules", str(unit)], capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
