"""SLO specs -> Prometheus recording rules and multi-window, multi-burn-rate alerts.

The method is the SRE workbook's ("Alerting on SLOs", alert 6): page when 2 % of a 30-day error
budget burns within an hour (14.4x, confirmed over 5 minutes) or 5 % within six hours (6x over
30 minutes); open a ticket when 10 % burns within a day (3x over 2 hours) or three days (1x over
6 hours). Burn factors follow from those budget fractions and the SLO period, so a 28-day SLO
gets 13.44 / 5.6 / 2.8 / 0.93 instead of 30-day numbers that do not fit it.

The rules have Sloth's and Pyrra's shape: one `slo:sli_error:ratio_rate<window>` series per
window (Sloth's names; Pyrra calls them `<metric>:burnrate<window>`), objective and budget as
metadata series, and one alert rule per window pair with `long_window`/`short_window` labels
(Pyrra's layout; Sloth joins the pairs of one severity with `or` into two alerts). A spec is
small on purpose: kubemind knows its own metric names, so an SLI is `availability`, `latency`
or `ttft` plus a threshold; `ratio` takes raw PromQL for anything else (stock Triton, workers).

A spec's optional `drift:` section adds a ticket (never a page) on the drift service's gauges
(kubemind.drift.service) for the service's model: too large a share of drifted features, or one
feature's PSI too high, held for `for:`, and only over a window with enough rows to mean it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kubemind.telemetry import LATENCY_BUCKETS

# The endpoints that serve predictions (the `endpoint` label of kubemind_requests_total);
# health, metadata and statistics calls are not what a user's SLO is about.
INFERENCE_ENDPOINTS = (
    "infer", "ModelInfer", "ModelStreamInfer", "generate", "generate_stream",
    "openai_completions", "openai_chat_completions", "openai_embeddings", "v1_predict",
    "jobs_submit",
)
# vLLM's buckets for vllm:time_to_first_token_seconds (vllm/v1/metrics/loggers.py): a TTFT
# threshold must be one of them, or "good" could not be counted from the histogram.
VLLM_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)
# (severity, long window, fraction of the period's budget that burning in it alerts on).
WORKBOOK_WINDOWS = (("page", "1h", 0.02), ("page", "6h", 0.05), ("ticket", "1d", 0.10), ("ticket", "3d", 0.10))
ALERT_NAME = "SLOErrorBudgetBurn"
DRIFT_ALERT_SUFFIX = "FeatureDrift"
RULES_LABEL = {"kubemind.io/rules": "slo"}
"""What a Prometheus' ruleSelector matches to load these PrometheusRules."""

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")


def seconds(duration: str) -> float:
    """A Prometheus duration of one unit ("5m", "30d") in seconds."""
    match = _DURATION.match(duration)
    if match is None:
        raise ValueError(f"{duration!r} is not a Prometheus duration such as 5m, 1h or 30d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def duration(total_seconds: float) -> str:
    """The shortest one-unit Prometheus duration for a whole number of seconds."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if total_seconds >= size and total_seconds % size == 0:
            return f"{int(total_seconds // size)}{unit}"
    raise ValueError(f"{total_seconds}s is not a whole number of seconds")


def _number(value: float) -> str:
    """A float as PromQL text without binary noise (0.0050000000000000044 -> 0.005)."""
    text = format(Decimal(repr(value)).normalize(), "f")
    return text


def le_matcher(threshold: float) -> str:
    """A regex for a bucket's `le` that matches both exposition spellings: prometheus_client
    writes 1.0 where Prometheus 3 normalises to 1."""
    text = _number(threshold)
    spellings = {text, f"{text}.0"} if "." not in text else {text}
    return "|".join(sorted(re.escape(s).replace("\\", "\\\\") for s in spellings))


class BurnWindow(BaseModel):
    """One alert: the error ratio over `long` AND over `short` exceeds factor x budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    severity: Literal["page", "ticket"]
    long: str
    short: str
    factor: float = Field(gt=0)

    @field_validator("long", "short")
    @classmethod
    def _duration(cls, value: str) -> str:
        seconds(value)
        return value


class Objective(BaseModel):
    """One SLO of a service: which requests are good, and which fraction of them must be."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    description: str = ""
    sli: Literal["availability", "latency", "ttft", "ratio"]
    objective: float = Field(gt=0, lt=1, description="good / all over the period, e.g. 0.995")
    threshold_seconds: float | None = None
    """latency, ttft: a request is good when it took at most this long (a histogram bucket)."""
    endpoints: list[str] = Field(default_factory=lambda: list(INFERENCE_ENDPOINTS))
    """availability, latency: which `endpoint` labels count."""
    error_codes: str = "5.."
    """availability: the `code` regex that makes a request bad (server errors by default)."""
    error_query: str = ""
    total_query: str = ""
    """ratio: PromQL with `{window}` where the range goes, e.g. sum(rate(x_total[{window}]))."""

    @model_validator(mode="after")
    def _fields_of_its_sli(self) -> Objective:
        if self.sli in ("latency", "ttft"):
            buckets = LATENCY_BUCKETS if self.sli == "latency" else VLLM_TTFT_BUCKETS
            if self.threshold_seconds not in buckets:
                raise ValueError(
                    f"{self.name}: threshold_seconds must be a bucket of the histogram, one of {list(buckets)}"
                )
        if self.sli == "ratio" and not ("{window}" in self.error_query and "{window}" in self.total_query):
            raise ValueError(f"{self.name}: a ratio SLI needs error_query and total_query with {{window}}")
        return self

    @property
    def budget(self) -> float:
        return float(Decimal("1") - Decimal(repr(self.objective)))


class DriftAlert(BaseModel):
    """Drift tickets of a service's model, on the drift service's gauges: the share of scored
    features that drifted (kubemind_drift_drifted_features_ratio{inferenceservice,model}) over a
    threshold, and each feature's PSI (kubemind_drift_psi{inferenceservice,model,feature}) over
    another; both only while the window holds at least `min_window_rows` rows
    (kubemind_drift_window_rows{inferenceservice,model}), so a
    window a few requests fill after a restart or a quiet night does not open a ticket."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    model: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """The `model` label of kubemind_drift_*: the reference profile's model, the name the
    version was registered under (`kubemind models register NAME --reference DATA`)."""
    drifted_features_ratio: float | None = Field(default=None, ge=0, lt=1)
    """Ticket when more than this share of the model's features drifted (0: any feature)."""
    psi: float | None = Field(default=None, gt=0)
    """Ticket when a feature's population stability index is over this (0.25: a large shift)."""
    min_window_rows: int = Field(default=100, gt=0)
    """Rows the current window must hold for either alert to fire."""
    for_: str = Field(default="30m", alias="for")
    """How long the condition must hold (the alert's `for:`)."""

    @field_validator("for_")
    @classmethod
    def _for(cls, value: str) -> str:
        seconds(value)
        return value

    @model_validator(mode="after")
    def _a_threshold(self) -> DriftAlert:
        if self.drifted_features_ratio is None and self.psi is None:
            raise ValueError("drift: set drifted_features_ratio, psi or both; without a threshold nothing can fire")
        return self


class ServiceSLOs(BaseModel):
    """The SLO spec of one service (observability/slos/<service>.yaml)."""

    model_config = ConfigDict(extra="forbid")
    service: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    kind: Literal["llm", "cv", "embeddings", "rag", "router", "async"]
    description: str = ""
    selector: dict[str, str]
    """Target labels that pick the service's series (the PodMonitor sets inferenceservice and
    component from the pod's KServe labels)."""
    period: str = "30d"
    objectives: list[Objective]
    windows: list[BurnWindow] | None = None
    """Override the workbook's four alerts (tests use seconds-long windows)."""
    drift: DriftAlert | None = None
    """Tickets on the drift service's scores of the service's model (none without it)."""

    @field_validator("period")
    @classmethod
    def _period(cls, value: str) -> str:
        seconds(value)
        return value

    @model_validator(mode="after")
    def _alerts_can_fire(self) -> ServiceSLOs:
        for objective in self.objectives:
            for burn in self.burn_windows():
                if burn.factor * objective.budget >= 1:
                    raise ValueError(
                        f"{objective.name}: a {burn.factor}x burn of a {objective.budget} budget is an error"
                        " ratio of 1 or more; that alert could never fire"
                    )
        return self

    def burn_windows(self) -> list[BurnWindow]:
        if self.windows is not None:
            return self.windows
        period = seconds(self.period)
        return [
            BurnWindow(
                severity=severity,  # type: ignore[arg-type]
                long=long,
                short=duration(seconds(long) / 12),  # the workbook's short window: 1/12 of the long
                factor=round(fraction * period / seconds(long), 4),
            )
            for severity, long, fraction in WORKBOOK_WINDOWS
        ]


def load_spec(path: Path) -> ServiceSLOs:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    return ServiceSLOs.model_validate(loaded)


def load_specs(directory: Path) -> list[ServiceSLOs]:
    specs = [load_spec(path) for path in sorted(directory.glob("*.yaml"))]
    names = [spec.service for spec in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"more than one SLO spec for {', '.join(duplicated)}")
    return specs


# --- PromQL ----------------------------------------------------------------------------------


def _selector(labels: dict[str, str], *extra: str) -> str:
    matchers = [f'{key}="{value}"' for key, value in sorted(labels.items())]
    return "{" + ",".join([*matchers, *extra]) + "}"


def error_ratio(spec: ServiceSLOs, objective: Objective, window: str) -> str:
    """The fraction of bad events over `window`: what every recording rule records."""
    if objective.sli == "ratio":
        bad_events = objective.error_query.replace("{window}", window)
        all_events = objective.total_query.replace("{window}", window)
        return f"({bad_events})\n/\n({all_events})"
    endpoints = 'endpoint=~"' + "|".join(objective.endpoints) + '"'
    if objective.sli == "availability":
        total = _selector(spec.selector, endpoints)
        bad = _selector(spec.selector, endpoints, f'code=~"{objective.error_codes}"')
        # `or vector(0)`: a server that never failed has no 5xx series at all, and its ratio
        # should read 0, not "no data" (a dashboard gap, a budget that looks unknown).
        return (
            f"(sum(rate(kubemind_requests_total{bad}[{window}])) or vector(0))\n/\n"
            f"sum(rate(kubemind_requests_total{total}[{window}]))"
        )
    assert objective.threshold_seconds is not None  # checked by the model
    if objective.sli == "latency":
        metric, total = "kubemind_request_duration_seconds", _selector(spec.selector, endpoints)
    else:
        metric, total = "vllm:time_to_first_token_seconds", _selector(spec.selector)
    good = total[:-1] + ("," if total != "{}" else "") + f'le=~"{le_matcher(objective.threshold_seconds)}"' + "}"
    return (
        f"(\n  sum(rate({metric}_count{total}[{window}]))\n  -\n"
        f"  sum(rate({metric}_bucket{good}[{window}]))\n)\n/\n"
        f"sum(rate({metric}_count{total}[{window}]))"
    )


def slo_labels(spec: ServiceSLOs, objective: Objective) -> dict[str, str]:
    return {"slo_id": f"{spec.service}-{objective.name}", "slo_service": spec.service, "slo": objective.name}


def _windows_used(spec: ServiceSLOs) -> list[str]:
    windows = {w for burn in spec.burn_windows() for w in (burn.long, burn.short)}
    return sorted(windows, key=seconds)


def rule_groups(spec: ServiceSLOs) -> list[dict[str, Any]]:
    """The Prometheus rule groups of one service: SLI recordings, metadata, alerts."""
    recordings: list[dict[str, Any]] = []
    metadata: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    for objective in spec.objectives:
        labels = slo_labels(spec, objective)
        match = _selector(labels)
        for window in _windows_used(spec):
            recordings.append({
                "record": f"slo:sli_error:ratio_rate{window}",
                "expr": error_ratio(spec, objective, window),
                "labels": labels,
            })
        budget = _number(objective.budget)
        shortest = _windows_used(spec)[0]
        metadata += [
            {"record": "slo:objective:ratio", "expr": f"vector({_number(objective.objective)})", "labels": labels},
            {"record": "slo:error_budget:ratio", "expr": f"vector({budget})", "labels": labels},
            {"record": "slo:time_period:days", "expr": f"vector({_number(seconds(spec.period) / 86400)})", "labels": labels},
            {"record": "slo:current_burn_rate:ratio", "expr": f"slo:sli_error:ratio_rate{shortest}{match} / {budget}", "labels": labels},
            # Sloth's period estimate: the mean of the shortest window's ratio over the period,
            # instead of one rate() over 30 days of raw samples.
            {
                "record": "slo:period_burn_rate:ratio",
                "expr": f"avg_over_time(slo:sli_error:ratio_rate{shortest}{match}[{spec.period}]) / {budget}",
                "labels": labels,
            },
            {
                "record": "slo:period_error_budget_remaining:ratio",
                "expr": f"1 - slo:period_burn_rate:ratio{match}",
                "labels": labels,
            },
        ]
        for burn in spec.burn_windows():
            threshold = _number(round(burn.factor * objective.budget, 10))
            alerts.append({
                "alert": ALERT_NAME,
                "expr": (
                    f"slo:sli_error:ratio_rate{burn.long}{match} > {threshold}\n"
                    f"and\nslo:sli_error:ratio_rate{burn.short}{match} > {threshold}"
                ),
                "labels": {
                    **labels,
                    "severity": burn.severity,
                    "long_window": burn.long,
                    "short_window": burn.short,
                    "burn_factor": _number(burn.factor),
                },
                "annotations": {
                    "summary": f"{spec.service}: {objective.name} SLO burning its error budget {_number(burn.factor)}x too fast",
                    "description": (
                        f"{objective.description or objective.name} (objective {_number(objective.objective * 100)} % over "
                        f"{spec.period}): the error ratio over {burn.long} and {burn.short} is above "
                        f"{threshold}; at this rate the budget lasts {_days_left(spec, burn)}."
                    ),
                },
            })
    prefix = f"kubemind-slo-{spec.service}"
    groups = [
        {"name": f"{prefix}-sli", "rules": recordings},
        {"name": f"{prefix}-meta", "rules": metadata},
        {"name": f"{prefix}-alerts", "rules": alerts},
    ]
    if spec.drift is not None:
        groups.append({"name": f"{prefix}-drift", "rules": drift_alerts(spec, spec.drift)})
    return groups


def drift_alert_name(spec: ServiceSLOs) -> str:
    """`<Service>FeatureDrift`: cv-classifier -> CvClassifierFeatureDrift."""
    return "".join(part.capitalize() for part in spec.service.split("-")) + DRIFT_ALERT_SUFFIX


def drift_labels(spec: ServiceSLOs, drift: DriftAlert) -> dict[str, str]:
    """The labels the drift tickets select on: the drift service names each series after the
    InferenceService whose events it measures (`--reference SERVICE=PATH`) and the profile's
    model, so a model served by two services is never judged on the other's window."""
    return {"inferenceservice": spec.selector.get("inferenceservice", spec.service), "model": drift.model}


def drift_alerts(spec: ServiceSLOs, drift: DriftAlert) -> list[dict[str, Any]]:
    """One alert rule per threshold set, both named drift_alert_name(spec) and told apart by
    `drift_signal`. The gauges of one model come from one scrape of the drift service, so the
    ratio and the row count share their labels and `and` matches them as they are; a PSI series
    has a `feature` more, which the match ignores."""
    model = _selector(drift_labels(spec, drift))
    enough_rows = f"kubemind_drift_window_rows{model} >= {drift.min_window_rows}"
    labels = {"slo_service": spec.service, "severity": "ticket"}
    where = f"over a window of at least {drift.min_window_rows} rows, for {drift.for_}"
    report = f"`kubemind drift report {drift.model}` plots each feature against its reference."
    rules: list[dict[str, Any]] = []
    if drift.drifted_features_ratio is not None:
        threshold = _number(drift.drifted_features_ratio)
        rules.append({
            "alert": drift_alert_name(spec),
            "expr": f"kubemind_drift_drifted_features_ratio{model} > {threshold}\nand\n{enough_rows}",
            "for": drift.for_,
            "labels": {**labels, "drift_signal": "drifted_features_ratio"},
            "annotations": {
                "summary": f"{spec.service}: {{{{ $value | humanizePercentage }}}} of model {drift.model}'s features drifted",
                "description": (
                    f"More than {_number(drift.drifted_features_ratio * 100)} % of the features of {drift.model} differ "
                    f"from its reference profile {where}. {report}"
                ),
            },
        })
    if drift.psi is not None:
        threshold = _number(drift.psi)
        rules.append({
            "alert": drift_alert_name(spec),
            "expr": f"kubemind_drift_psi{model} > {threshold}\nand ignoring (feature)\n{enough_rows}",
            "for": drift.for_,
            "labels": {**labels, "drift_signal": "psi"},
            "annotations": {
                "summary": (
                    f"{spec.service}: feature {{{{ $labels.feature }}}} of model {drift.model} shifted"
                    f" (PSI {{{{ printf \"%.2f\" $value }}}})"
                ),
                "description": f"The feature's population stability index is above {threshold} {where}. {report}",
            },
        })
    return rules


def _days_left(spec: ServiceSLOs, burn: BurnWindow) -> str:
    left = seconds(spec.period) / burn.factor
    return f"{_number(round(left / 86400, 2))} days" if left >= 86400 else f"{_number(round(left / 3600, 2))} hours"


# --- files -----------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # every rule spells its labels out
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(documents: Iterable[Any], header: str) -> str:
    body = "---\n".join(yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=200) for doc in documents)
    return header + body


GENERATED = "# Generated by `kubemind observability generate` from observability/slos/{name}.yaml: do not edit.\n"


def rules_file(spec: ServiceSLOs) -> str:
    """A Prometheus rule file (what promtool and a plain Prometheus load)."""
    return dump_yaml([{"groups": rule_groups(spec)}], GENERATED.format(name=spec.service))


def prometheus_rule(spec: ServiceSLOs, namespace: str) -> dict[str, Any]:
    """The same groups as a prometheus-operator PrometheusRule."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": f"{spec.service}-slo",
            "namespace": namespace,
            "labels": dict(RULES_LABEL),
        },
        "spec": {"groups": rule_groups(spec)},
    }


def prometheus_rules_manifest(specs: Sequence[ServiceSLOs], namespace: str = "kubemind") -> str:
    header = "# Generated by `kubemind observability generate` from observability/slos/: do not edit.\n"
    return dump_yaml([prometheus_rule(spec, namespace) for spec in specs], header)
