"""One analysis interval: every gate of a policy, evaluated for the candidate (and the primary
where a gate compares the two). The outcome is `pass`, `fail` or `hold`; hold is the answer to
missing evidence (no data, too few samples, Prometheus down), never a pass."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from kubemind.errors import KubemindError
from kubemind.manifests.problems import format_path
from kubemind.release.errors import PolicyRejected
from kubemind.release.policy import SAMPLES, Gate, Policy
from kubemind.release.prometheus import Prometheus, Sample

PASS, FAIL, HOLD = "pass", "fail", "hold"
# PSI's usual smoothing of empty classes (a share of 0 would make ln(0) infinite).
PSI_EPSILON = 1e-4


@dataclass
class Verdict:
    outcome: str
    reason: str
    values: dict[str, Any] = field(default_factory=dict)
    """Per gate: the candidate's value, the primary's where compared, the threshold, pass/fail;
    plus the candidate's sample count. The audit record's `reason`."""


class NoEvidence(Exception):
    """A gate cannot be decided from what Prometheus holds."""


def psi(candidate: dict[str, float], primary: dict[str, float]) -> float:
    """Population stability index of the candidate's class shares against the primary's."""
    classes = set(candidate) | set(primary)
    total_c, total_p = sum(candidate.values()), sum(primary.values())
    if total_c <= 0 or total_p <= 0:
        raise NoEvidence("no predictions to compare")
    index = 0.0
    for name in classes:
        c = max(candidate.get(name, 0.0) / total_c, PSI_EPSILON)
        p = max(primary.get(name, 0.0) / total_p, PSI_EPSILON)
        index += (c - p) * math.log(c / p)
    return index


def _scalar(samples: list[Sample], what: str) -> float:
    if not samples:
        raise NoEvidence(f"no data for {what}")
    return sum(sample.value for sample in samples)


def evaluate(prometheus: Prometheus, policy: Policy, primary: str | None, candidate: str,
             extra: tuple[tuple[Gate, str], ...] = ()) -> Verdict:
    """The gates of `policy` for `candidate` over the policy's window; `extra`: more gates, each
    with the policy field it comes from (the shadow phase's agreement gate)."""
    values: dict[str, Any] = {}
    try:
        samples = prometheus.query(policy.render(SAMPLES, candidate), "samples")
        count = sum(s.value for s in samples)
        values["samples"] = round(count, 3)
        if not samples or count < policy.min_samples:
            return Verdict(HOLD, f"{count:.0f} candidate request(s) in {policy.window}, fewer than minSamples"
                           f" {policy.min_samples}: no evidence yet", values)
        failed = []
        gates = [*((gate, format_path(("spec", "gates", index, "query"))) for index, gate in enumerate(policy.gates)),
                 *extra]
        for gate, where in gates:
            result = _gate(prometheus, policy, gate, where, primary, candidate)
            values[gate.name] = result
            if not result["pass"]:
                failed.append(f"{gate.name} {result['detail']}")
    except NoEvidence as exc:
        return Verdict(HOLD, f"{exc}: no evidence, holding", values)
    except PolicyRejected:
        raise
    except KubemindError as exc:  # Prometheus unreachable or failing
        return Verdict(HOLD, f"{exc}: holding", values)
    if failed:
        return Verdict(FAIL, "; ".join(failed), values)
    return Verdict(PASS, "every gate passed", values)


def _gate(prometheus: Prometheus, policy: Policy, gate: Gate, field: str, primary: str | None,
          candidate: str) -> dict[str, Any]:
    def query(revision: str) -> list[Sample]:
        return prometheus.query(policy.render(gate.template, revision, gate.quantile), field)

    if gate.compares_with_primary and not primary:
        raise NoEvidence(f"gate {gate.name}: no primary revision to compare with")
    if gate.metric == "predictionPsi":
        assert primary is not None
        shares = [{s.labels.get("class", ""): s.value for s in query(rev)} for rev in (candidate, primary)]
        value = psi(*shares)
        limit = gate.max if gate.max is not None else 0.1
        return {"value": round(value, 4), "max": limit, "pass": value <= limit,
                "detail": f"PSI {value:.3f} > {limit}" if value > limit else ""}
    value = _scalar(query(candidate), f"gate {gate.name} ({candidate})")
    result: dict[str, Any] = {"value": round(value, 6)}
    problems = []
    if gate.min is not None:
        result["min"] = gate.min
        if value < gate.min:
            problems.append(f"{value:.4f} < min {gate.min}")
    if gate.max is not None:
        result["max"] = gate.max
        if value > gate.max:
            problems.append(f"{value:.4f} > max {gate.max}")
    if gate.max_ratio is not None:
        assert primary is not None
        base = _scalar(query(primary), f"gate {gate.name} ({primary})")
        result.update(primary=round(base, 6), max_ratio=gate.max_ratio)
        if value > gate.max_ratio * base:
            problems.append(f"{value:.4f} > {gate.max_ratio} x primary {base:.4f}")
    result.update({"pass": not problems, "detail": "; ".join(problems)})
    return result
