"""The model-quality gate's PSI over class histograms."""

from __future__ import annotations

import math

import pytest

from kubemind.release.analysis import NoEvidence, psi


def test_equal_distributions_have_zero_psi_and_a_shifted_one_does_not() -> None:
    assert psi({"cat": 50, "dog": 50}, {"cat": 500, "dog": 500}) == pytest.approx(0.0)
    shifted = psi({"cat": 90, "dog": 10}, {"cat": 50, "dog": 50})
    assert shifted == pytest.approx((0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5))
    assert shifted > 0.2  # the usual "significant shift" line


def test_a_class_only_one_side_predicts_is_smoothed_not_infinite() -> None:
    assert 0.5 < psi({"cat": 100}, {"dog": 100}) < 100


def test_no_predictions_is_no_evidence() -> None:
    with pytest.raises(NoEvidence):
        psi({}, {"cat": 3})
