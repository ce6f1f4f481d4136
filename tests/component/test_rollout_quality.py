"""The model-quality gate and the shadow phase, end to end. Each candidate is first a shadow: the
controller mirrors the VirtualService's requests to it while every client answer comes from the
primary. A candidate that is a *different model* (it predicts other classes for the same inputs)
is rolled back in its shadow phase on the agreement gate (PSI of its top-1 class histogram
against the primary's), though it answers every mirrored request, and never answers a client; a
candidate that is the same model in a new revision agrees, goes on to canary steps and is promoted.

The served model is an ONNX classifier (a folder with labels.txt) on kubemind's ONNX runtime,
from `file://` storage; its replicas count their top-1 classes in kubemind_prediction_class_total,
which a real Prometheus scrapes by revision, under `kubemind up` and the release controller.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubemind.release.analysis import psi
from kubemind.release.controller import PROMOTED, ROLLED_BACK, SHADOW, SHADOW_AGREEMENT
from kubemind.release.shadow import MIRROR_ANNOTATION
from tests.component.registry_fixtures import build_onnx_model
from tests.component.rollout_fixtures import (
    Load,
    Rig,
    add_policy,
    add_resource,
    fast_policy,
    predictor_status,
    running_rig,
    wait_for_state,
)
from tests.component.up_fixtures import virtual_service, write_runtimes_overlay

SERVICE = "scorer"
CLASSES = 4
# The same 32 rows in every request: each revision's class histogram is a property of its model.
ROWS = np.random.default_rng(7).uniform(0.0, 1.0, size=(32, 3)).astype(np.float32)
BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(ROWS.shape), "data": ROWS.ravel().tolist()}]}
PRIMARY_WEIGHTS = np.random.default_rng(0).standard_normal((3, CLASSES))
# A different model: whatever the row, class 3 scores highest.
OTHER_WEIGHTS = np.array([[0.0, 0.0, 0.0, 5.0]] * 3) + 0.01 * PRIMARY_WEIGHTS
MAX_PSI = 0.2
HOST = "scorer.models.kubemind.dev"
"""The VirtualService's host: clients come through it, and so does the shadow's mirror."""


def top1_histogram(weights: np.ndarray) -> dict[str, float]:
    scores = np.maximum(ROWS @ weights, 0.0)
    classes, counts = np.unique(np.argmax(scores, axis=1), return_counts=True)
    return {f"class-{c}": float(n) for c, n in zip(classes, counts, strict=True)}


def scorer(storage: Path) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": SERVICE, "namespace": "kubemind"},
        "spec": {"predictor": {"minReplicas": 1, "model": {
            "modelFormat": {"name": "onnx"}, "runtime": "kubemind-onnx", "storageUri": storage.as_uri()}}},
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    primary = build_onnx_model(root / "v1", CLASSES, PRIMARY_WEIGHTS)
    same = root / "v2"
    shutil.copytree(primary, same)  # the same model, published again: a new revision
    other = build_onnx_model(root / "v3", CLASSES, OTHER_WEIGHTS)
    # the premise of the tests: the two models disagree far beyond the gate, the copy not at all
    assert psi(top1_histogram(OTHER_WEIGHTS), top1_histogram(PRIMARY_WEIGHTS)) > 10 * MAX_PSI
    return {"primary": primary, "same": same, "other": other}


@pytest.fixture(scope="module")
def rig(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    def overlay(folder: Path, prometheus_url: str) -> Path:
        write_runtimes_overlay(folder, scorer(models["primary"]))
        policy = fast_policy(prometheus_url)
        policy["spec"]["gates"] = [{"name": "success", "metric": "successRate", "min": 0.99},
                                   {"name": "quality", "metric": "predictionPsi", "max": MAX_PSI}]
        policy["spec"]["shadow"] = {"durationSeconds": 3, "mirrorPercent": 100, "maxPsi": MAX_PSI}
        add_resource(folder, "virtualservice.yaml", virtual_service("scorer-edge", HOST, SERVICE))
        return add_policy(folder, SERVICE, policy)

    with running_rig(tmp_path_factory.mktemp("rollout"), 300.0, overlay, SERVICE) as rig:
        yield rig


def new_model(rig: Rig, storage: Path) -> None:
    """Point the predictor at another model folder with no live traffic (a shadow phase comes
    first), as a release pipeline would."""
    rig.api.patch_isvc("kubemind", SERVICE, {"spec": {"predictor": {
        "canaryTrafficPercent": 0, "model": {"storageUri": storage.as_uri()}}}})


def mirrors(rig: Rig) -> list[Any]:
    """The mirrors on the VirtualService's routes, and the controller's mark of its own."""
    (edge,) = rig.api.list_virtual_services("kubemind")
    return [route.get("mirror") for route in edge["spec"]["http"]] + [
        (edge["metadata"].get("annotations") or {}).get(MIRROR_ANNOTATION)]


def audit_records(rig: Rig, candidate: str, last: str) -> list[dict[str, Any]]:
    """The candidate's audit records, once the `last` action is among them (the controller
    appends a record just after the patch the test sees)."""
    deadline = time.monotonic() + 30
    while True:
        records = [r for r in map(json.loads, rig.controller.audit.lines())
                   if candidate in ((r.get("after") or {}).get("revision"), (r.get("before") or {}).get("revision"))]
        if any(r["action"] == last for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def test_a_different_model_in_its_shadow_phase_is_rolled_back_and_never_answers_a_client(
    rig: Rig, models: dict[str, Path]
) -> None:
    primary = predictor_status(rig.api, SERVICE)["latestRolledoutRevision"]
    load = Load(rig.gateway_root, SERVICE, BODY, host=HOST)
    try:
        new_model(rig, models["other"])
        shadow = wait_for_state(rig.api, lambda s: s.candidate != primary and s.phase == SHADOW, "shadow",
                                name=SERVICE)
        assert mirrors(rig)[0]["host"] == f"{shadow.candidate}.kubemind.svc.cluster.local"
        state = wait_for_state(rig.api, lambda s: s.phase == ROLLED_BACK, "rolled back", timeout=180, name=SERVICE)
    finally:
        load.finish()
    assert load.errors == [] and load.done > 50, load.errors[:5]
    # Every client answer came from the primary; the candidate saw the mirrored copies only.
    assert set(load.by_revision) == {primary}, load.by_revision
    assert state.gates["samples"] >= 5 and state.gates["success"]["value"] == 1.0
    assert state.failures == 2 and f"{SHADOW_AGREEMENT} PSI" in state.reason, state.reason
    assert state.gates[SHADOW_AGREEMENT]["value"] > MAX_PSI
    records = audit_records(rig, state.candidate, "rollout.rollback")
    assert [r["action"] for r in records if r["action"] != "rollout.hold"] == [
        "rollout.start", "rollout.analysis", "rollout.analysis", "rollout.rollback"]
    assert records[-1]["before"]["phase"] == SHADOW and records[-1]["before"]["weight"] == 0
    assert rig.api.get_isvc("kubemind", SERVICE)["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert mirrors(rig) == [None, None]  # the shadow's mirror is gone with it


def test_the_same_model_in_a_new_revision_agrees_in_its_shadow_phase_and_is_promoted(
    rig: Rig, models: dict[str, Path]
) -> None:
    primary = predictor_status(rig.api, SERVICE)["latestRolledoutRevision"]
    load = Load(rig.gateway_root, SERVICE, BODY, host=HOST)
    try:
        new_model(rig, models["same"])
        state = wait_for_state(rig.api, lambda s: s.phase == PROMOTED, "promoted", timeout=300, name=SERVICE)
    finally:
        load.finish()
    assert load.errors == [], load.errors[:5]
    assert load.by_revision.get(state.candidate, 0) > 0 and load.by_revision.get(primary, 0) > 0
    assert state.gates["quality"]["value"] <= MAX_PSI
    records = audit_records(rig, state.candidate, "rollout.promote")
    actions = [r["action"] for r in records if r["action"] != "rollout.hold"]
    assert actions[0] == "rollout.start" and actions[-1] == "rollout.promote" and "rollout.step" in actions
    start = records[0]
    assert start["after"]["phase"] == SHADOW and "100% mirrored by VirtualService/scorer-edge" in start["reason"]["why"]
    assert "canaryTrafficPercent" not in rig.api.get_isvc("kubemind", SERVICE)["spec"]["predictor"]
    assert mirrors(rig) == [None, None]
