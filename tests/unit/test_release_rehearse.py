"""`kubemind rollout rehearse`'s pieces: the replicas as Prometheus targets, a request made from
a model's metadata, and the patch that makes a new revision with a canary split."""

from __future__ import annotations

import json
from typing import Any

from kubemind.local.up.kube_patch import json_patch
from kubemind.local.up.specs import plan_services
from kubemind.local.up.state import prometheus_targets
from kubemind.manifests.problems import ManifestObject
from kubemind.release.rehearse import REVISION_VARIABLE, new_revision_patch, sample_request


def test_each_revision_is_a_target_group_labelled_as_a_pod_would_be() -> None:
    state = {"services": [{"name": "simple", "namespace": "kubemind", "components": [{
        "component": "predictor", "revisions": [
            {"revision": "simple-predictor-aaaa", "ports": [[5001, 5002], [5011, 5012]]},
            {"revision": "simple-predictor-bbbb", "ports": []},  # scaled to zero: nothing to scrape
        ]}]}]}
    assert prometheus_targets(state) == [{
        "targets": ["127.0.0.1:5001", "127.0.0.1:5011"],
        "labels": {"namespace": "kubemind", "inferenceservice": "simple", "component": "predictor",
                   "revision": "simple-predictor-aaaa"}}]


def test_a_sample_request_fills_the_models_inputs_with_zeros() -> None:
    metadata = {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]},
                           {"name": "TEXT", "datatype": "BYTES", "shape": [1]}]}
    assert sample_request(metadata) == {"inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": [0] * 16},
        {"name": "TEXT", "datatype": "BYTES", "shape": [1], "data": [""]}]}
    assert sample_request({"name": "llm"}) is None


def _isvc() -> dict[str, Any]:
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "simple", "namespace": "kubemind"},
            "spec": {"predictor": {"minReplicas": 1, "containers": [{
                "name": "kserve-container", "image": "kubemind/core",
                "args": ["kubemind_predictors.simple", "--model_name=simple"],
                "env": [{"name": "KEEP", "value": "1"}]}]}}}


def _revision(body: dict[str, Any]) -> str:
    (plan,) = plan_services([ManifestObject("test", body)])
    return plan.components["predictor"].revision


def test_the_patch_makes_a_new_revision_with_the_canary_each_time() -> None:
    first = _isvc()
    second = json_patch(first, new_revision_patch(first, 20))
    third = json_patch(second, new_revision_patch(second, 20))
    assert second["spec"]["predictor"]["canaryTrafficPercent"] == 20
    env = third["spec"]["predictor"]["containers"][0]["env"]
    assert env == [{"name": "KEEP", "value": "1"}, {"name": REVISION_VARIABLE, "value": "3"}]
    assert len({_revision(first), _revision(second), _revision(third)}) == 3
    # kubectl gets it as one JSON argument
    assert json.loads(json.dumps(new_revision_patch(third, 10)))[0]["value"] == 10
