"""RolloutPolicy validation: `kubemind validate` and the controller refuse the same bad policies,
naming the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubemind.cli import main
from kubemind.release.errors import PolicyRejected
from kubemind.release.policy import parse_policy
from kubemind.release.promql import promtool

GOOD: dict[str, Any] = {
    "apiVersion": "kubemind.io/v1alpha1",
    "kind": "RolloutPolicy",
    "metadata": {"name": "simple", "namespace": "kubemind"},
    "spec": {
        "canary": {"steps": [{"weight": 10, "pauseSeconds": 1}, {"weight": 50}]},
        "analysis": {"intervalSeconds": 1, "minSamples": 10, "failureLimit": 2},
        "gates": [
            {"name": "success", "metric": "successRate", "min": 0.99},
            {"name": "p99", "metric": "latency", "quantile": 0.99, "max": 0.5},
            {"name": "p99-vs-primary", "metric": "latency", "quantile": 0.99, "maxRatio": 2},
            {"name": "classes", "metric": "predictionPsi", "max": 0.2},
        ],
        "promotion": {"moveAlias": "champion"},
    },
}


def bad(change: Any) -> dict[str, Any]:
    body = copy.deepcopy(GOOD)
    change(body["spec"])
    return body


CASES = {
    "unknown metric": (lambda s: s["gates"][0].update(metric="errorBudget"), "spec.gates[0].metric",
                       "'errorBudget'"),
    "weight over 100": (lambda s: s["canary"]["steps"][1].update(weight=150), "spec.canary.steps[1].weight", "100"),
    "PromQL that does not parse": (lambda s: s["gates"][1].update(query="histogram_quantile(0.99, sum(rate(x[${window}]))"),
                                   "spec.gates[1].query", "PromQL does not parse"),
    "unknown placeholder": (lambda s: s["gates"][0].update(query='up{pod="${pod}"}'), "spec.gates[0].query", "pod"),
    "weights that do not increase": (lambda s: s["canary"]["steps"][1].update(weight=5),
                                     "spec.canary.steps[1].weight", "increase"),
}


def test_a_good_policy_validates_and_parses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().out
    policy = parse_policy(GOOD)
    assert [s.weight for s in policy.steps] == [10, 50] and policy.move_alias == "champion"
    assert policy.render(policy.gates[0].template, "simple-predictor-abc") == (
        'sum(rate(kubemind_requests_total{revision="simple-predictor-abc",code!~"5.."}[10s]))'
        ' / sum(rate(kubemind_requests_total{revision="simple-predictor-abc"}[10s]))')


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_policy_is_refused_by_validate_and_by_the_controller_naming_the_field(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    change, field, words = CASES[case]
    if "PromQL" in case and promtool() is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed")
    body = bad(change)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(body))
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert field in out and words in out, out
    with pytest.raises(PolicyRejected) as refused:
        parse_policy(body)
    assert any(path == field and words in message for path, message in refused.value.problems), refused.value
