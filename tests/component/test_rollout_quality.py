"""The model-quality gate, end to end: a candidate that is a *different model* (it predicts other
classes for the same inputs) is rolled back on the prediction-distribution gate (PSI of the
candidate's top-1 class histogram against the primary's), though it answers every request; a
candidate that is the same model in a new revision passes the gate and is promoted.

The served model is an ONNX classifier (a folder with labels.txt) on kubemind's ONNX runtime,
from `file://` storage; its replicas count their top-1 classes in kubemind_prediction_class_total,
which a real Prometheus scrapes by revision, under `kubemind up` and the release controller.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubemind.release.analysis import psi
from kubemind.release.controller import PROMOTED, ROLLED_BACK
from tests.component.registry_fixtures import build_onnx_model
from tests.component.rollout_fixtures import (
    Load,
    Rig,
    add_policy,
    fast_policy,
    running_rig,
    wait_for_state,
)
from tests.component.up_fixtures import write_runtimes_overlay

SERVICE = "scorer"
CLASSES = 4
# The same 32 rows in every request: each revision's class histogram is a property of its model.
ROWS = np.random.default_rng(7).uniform(0.0, 1.0, size=(32, 3)).astype(np.float32)
BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(ROWS.shape), "data": ROWS.ravel().tolist()}]}
PRIMARY_WEIGHTS = np.random.default_rng(0).standard_normal((3, CLASSES))
# A different model: whatever the row, class 3 scores highest.
OTHER_WEIGHTS = np.array([[0.0, 0.0, 0.0, 5.0]] * 3) + 0.01 * PRIMARY_WEIGHTS
MAX_PSI = 0.2


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
        return add_policy(folder, SERVICE, policy)

    with running_rig(tmp_path_factory.mktemp("rollout"), 300.0, overlay, SERVICE) as rig:
        yield rig


def new_model(rig: Rig, storage: Path) -> None:
    """Point the predictor at another model folder with a 20 % canary, as a release pipeline would."""
    rig.api.patch_isvc("kubemind", SERVICE, {"spec": {"predictor": {
        "canaryTrafficPercent": 20, "model": {"storageUri": storage.as_uri()}}}})


def test_a_different_model_is_rolled_back_on_the_quality_gate_though_it_answers_everything(
    rig: Rig, models: dict[str, Path]
) -> None:
    load = Load(rig.gateway, SERVICE, BODY)
    try:
        new_model(rig, models["other"])
        state = wait_for_state(rig.api, lambda s: s.phase == ROLLED_BACK, "rolled back", timeout=180, name=SERVICE)
    finally:
        load.finish()
    # every request was answered: success alone would have promoted it
    assert load.errors == [] and load.done > 50, load.errors[:5]
    assert load.by_revision.get(state.candidate, 0) > 0
    assert state.failures == 2 and "quality PSI" in state.reason, state.reason
    assert state.gates["quality"]["value"] > MAX_PSI and state.gates["success"]["value"] == 1.0
    assert rig.api.get_isvc("kubemind", SERVICE)["spec"]["predictor"]["canaryTrafficPercent"] == 0


def test_the_same_model_in_a_new_revision_passes_the_quality_gate_and_is_promoted(
    rig: Rig, models: dict[str, Path]
) -> None:
    load = Load(rig.gateway, SERVICE, BODY)
    try:
        new_model(rig, models["same"])
        state = wait_for_state(rig.api, lambda s: s.phase == PROMOTED, "promoted", timeout=300, name=SERVICE)
    finally:
        load.finish()
    assert load.errors == [], load.errors[:5]
    assert state.gates["quality"]["value"] <= MAX_PSI
    assert "canaryTrafficPercent" not in rig.api.get_isvc("kubemind", SERVICE)["spec"]["predictor"]
