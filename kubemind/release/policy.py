"""The RolloutPolicy: what a body means once its schema holds, the gates' PromQL templates, and
the problems that refuse a policy (the CRD schema's, then the templates': unknown placeholders
and PromQL that does not parse), each naming its field.

Built-in templates read kubemind's own metrics, which carry the replica's `revision` (Knative's
K_REVISION; see kubemind/telemetry.py), and vLLM's TTFT histogram, which on a cluster gets
`revision` from the pod's `serving.knative.dev/revision` label (the PodMonitor's relabeling).
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass, field
from typing import Any

from kubemind.manifests.crd_catalog import PACKAGED_CRDS, load_catalog
from kubemind.manifests.problems import ManifestObject, format_path
from kubemind.manifests.schemas import check_schema
from kubemind.release import promql
from kubemind.release.errors import PolicyRejected

GROUP = "kubemind.io"
VERSION = "v1alpha1"
KIND = "RolloutPolicy"
PLURAL = "rolloutpolicies"
POLICY_ANNOTATION = "kubemind.io/rollout-policy"
"""On an InferenceService: the name of the RolloutPolicy (same namespace) that rolls it out."""

SAMPLES = 'sum(increase(kubemind_requests_total{revision="${revision}"}[${window}]))'
TEMPLATES = {
    "successRate": 'sum(rate(kubemind_requests_total{revision="${revision}",code!~"5.."}[${window}]))'
                   ' / sum(rate(kubemind_requests_total{revision="${revision}"}[${window}]))',
    "latency": 'histogram_quantile(${quantile}, sum by (le) (rate('
               'kubemind_request_duration_seconds_bucket{revision="${revision}"}[${window}])))',
    "ttft": 'histogram_quantile(${quantile}, sum by (le) (rate('
            'vllm:time_to_first_token_seconds_bucket{revision="${revision}"}[${window}])))',
    # One series per predicted class: the controller computes PSI from both revisions' shares.
    "predictionPsi": 'sum by (class) (increase(kubemind_prediction_class_total{revision="${revision}"}[${window}]))',
}
PLACEHOLDERS = ("revision", "namespace", "window", "quantile")
DEFAULT_QUANTILE = 0.99


@dataclass(frozen=True)
class Gate:
    name: str
    metric: str
    quantile: float = DEFAULT_QUANTILE
    min: float | None = None
    max: float | None = None
    max_ratio: float | None = None
    query: str | None = None

    @property
    def template(self) -> str:
        return self.query or TEMPLATES[self.metric]

    @property
    def compares_with_primary(self) -> bool:
        return self.max_ratio is not None or self.metric == "predictionPsi"


@dataclass(frozen=True)
class Step:
    weight: int
    pause_seconds: float = 0


@dataclass(frozen=True)
class Shadow:
    duration_seconds: float
    mirror_percent: int = 100
    max_psi: float = 0.1


@dataclass(frozen=True)
class Policy:
    name: str
    namespace: str
    steps: tuple[Step, ...]
    interval_seconds: float
    gates: tuple[Gate, ...]
    min_samples: int = 20
    failure_limit: int = 2
    window_seconds: float | None = None
    shadow: Shadow | None = None
    prometheus_url: str | None = None
    move_alias: str | None = None
    body: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def window(self) -> str:
        seconds = self.window_seconds or max(4 * self.interval_seconds, 10.0)
        return f"{max(1, round(seconds))}s"

    def render(self, template: str, revision: str, quantile: float = DEFAULT_QUANTILE) -> str:
        return render(template, revision=revision, namespace=self.namespace, window=self.window, quantile=quantile)


def render(template: str, **values: Any) -> str:
    return string.Template(template).substitute({k: str(v) for k, v in values.items()})


@functools.lru_cache(maxsize=1)
def _catalog() -> Any:
    return load_catalog(PACKAGED_CRDS / "kubemind")


def policy_problems(body: dict[str, Any], check_promql: bool = True) -> list[tuple[str, str]]:
    """(field path, message) for everything that refuses this RolloutPolicy; empty when it is good.

    `check_promql`: also parse each gate's PromQL with promtool (skipped when promtool is absent;
    the controller then relies on Prometheus refusing the query)."""
    obj = ManifestObject("policy", body)
    problems = [(p.path, p.message) for p in check_schema(obj, _catalog())]
    return problems or gate_problems(body, check_promql)


def gate_problems(body: dict[str, Any], check_promql: bool = True) -> list[tuple[str, str]]:
    """The problems the CRD schema cannot see, in a body whose schema holds."""
    problems: list[tuple[str, str]] = []
    gates = body["spec"]["gates"]
    expressions: dict[str, str] = {}
    for index, gate in enumerate(gates):
        path = format_path(("spec", "gates", index, "query" if gate.get("query") else "metric"))
        metric = gate["metric"]
        if gate.get("maxRatio") is not None and metric not in ("latency", "ttft"):
            problems.append((format_path(("spec", "gates", index, "maxRatio")),
                             f"maxRatio compares a latency with the primary's; {metric} takes min or max"))
        if metric == "successRate" and gate.get("min") is None:
            problems.append((format_path(("spec", "gates", index, "min")), "a successRate gate needs min"))
        if metric != "successRate" and gate.get("max") is None and gate.get("maxRatio") is None:
            problems.append((format_path(("spec", "gates", index)), f"a {metric} gate needs max or maxRatio"))
        template = gate.get("query") or TEMPLATES[metric]
        try:
            expressions[path] = render(template, revision="candidate-rev", namespace="ns", window="10s",
                                       quantile=gate.get("quantile", DEFAULT_QUANTILE))
        except (KeyError, ValueError) as exc:
            problems.append((path, f"unknown placeholder {exc} (known: "
                             f"{', '.join('${' + p + '}' for p in PLACEHOLDERS)})"))
    if check_promql and not problems:
        for path, error in (promql.parse_problems(expressions) or {}).items():
            problems.append((path, f"PromQL does not parse: {error}"))
    seen: set[str] = set()
    for index, gate in enumerate(gates):
        if gate["name"] in seen:
            problems.append((format_path(("spec", "gates", index, "name")), f"gate name {gate['name']!r} repeats"))
        seen.add(gate["name"])
    weights = [step["weight"] for step in body["spec"]["canary"]["steps"]]
    for index in range(1, len(weights)):
        if weights[index] <= weights[index - 1]:
            problems.append((format_path(("spec", "canary", "steps", index, "weight")),
                             f"canary weights must increase ({weights[index - 1]} then {weights[index]})"))
    return problems


def parse_policy(body: dict[str, Any], check_promql: bool = True) -> Policy:
    problems = policy_problems(body, check_promql)
    if problems:
        raise PolicyRejected.of(problems)
    metadata, spec = body.get("metadata") or {}, body["spec"]
    analysis, shadow = spec["analysis"], spec.get("shadow")
    return Policy(
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace") or "default"),
        steps=tuple(Step(int(s["weight"]), float(s.get("pauseSeconds", 0))) for s in spec["canary"]["steps"]),
        interval_seconds=float(analysis["intervalSeconds"]),
        window_seconds=float(analysis["windowSeconds"]) if analysis.get("windowSeconds") else None,
        min_samples=int(analysis.get("minSamples", 20)),
        failure_limit=int(analysis.get("failureLimit", 2)),
        gates=tuple(Gate(g["name"], g["metric"], float(g.get("quantile", DEFAULT_QUANTILE)), g.get("min"),
                         g.get("max"), g.get("maxRatio"), g.get("query")) for g in spec["gates"]),
        shadow=Shadow(float(shadow["durationSeconds"]), int(shadow.get("mirrorPercent", 100)),
                      float(shadow.get("maxPsi", 0.1))) if shadow else None,
        prometheus_url=(spec.get("prometheus") or {}).get("url"),
        move_alias=(spec.get("promotion") or {}).get("moveAlias"),
        body=body,
    )
