"""Drift statistics of one feature: reference profile vs the current window.

Small windows get a test with a p-value (Kolmogorov-Smirnov for numbers, chi-squared for
categories): with few samples a distance alone is mostly noise, a test says how surprising it
is. Large windows get a distance (Wasserstein, scaled by the reference's spread; Jensen-Shannon
for categories): with thousands of samples every test rejects on differences too small to
matter, a distance says how big the difference is. PSI (population stability index, the
industry's rule of thumb: < 0.1 stable, > 0.25 shifted) is reported for both.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

REFERENCE_SAMPLE = 2000
"""Values a numeric feature's reference keeps (a uniform sample) for KS, Wasserstein and plots."""
BINS = 10
PSI_EPSILON = 1e-4


@dataclass
class FeatureProfile:
    """The reference distribution of one feature."""

    name: str
    kind: str
    """numeric or categorical"""
    sample: list[float] = field(default_factory=list)
    edges: list[float] = field(default_factory=list)
    """Inner bin edges (reference deciles) for PSI."""
    proportions: list[float] = field(default_factory=list)
    """Reference share per bin (numeric) or per category (categorical, in `categories` order)."""
    categories: list[str] = field(default_factory=list)
    count: int = 0

    @classmethod
    def of(cls, name: str, values: Sequence[Any], seed: int = 0) -> FeatureProfile:
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            array = np.asarray(values, dtype=float)
            edges = np.unique(np.quantile(array, np.linspace(0, 1, BINS + 1)[1:-1])).tolist()
            sample = array.tolist() if len(array) <= REFERENCE_SAMPLE else random.Random(seed).sample(array.tolist(), REFERENCE_SAMPLE)
            return cls(name, "numeric", sample, edges, _bin_shares(array, edges), count=len(array))
        labels = [str(v) for v in values]
        categories = sorted(set(labels))
        return cls(name, "categorical", proportions=_category_shares(labels, categories), categories=categories, count=len(labels))

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureProfile:
        return cls(**data)


def _bin_shares(values: np.ndarray, edges: Sequence[float]) -> list[float]:
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1)
    return (counts / max(1, counts.sum())).tolist()


def _category_shares(labels: Iterable[str], categories: Sequence[str]) -> list[float]:
    index = {c: i for i, c in enumerate(categories)}
    counts = np.zeros(len(categories) + 1)  # the last slot: categories the reference never saw
    total = 0
    for label in labels:
        counts[index.get(label, len(categories))] += 1
        total += 1
    return (counts / max(1, total)).tolist()


def psi(reference: Sequence[float], current: Sequence[float]) -> float:
    ref = np.clip(np.asarray(reference, dtype=float), PSI_EPSILON, None)
    cur = np.clip(np.asarray(current, dtype=float), PSI_EPSILON, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


@dataclass(frozen=True)
class DriftScore:
    feature: str
    method: str
    """ks, chi2 (small windows), wasserstein, jensen_shannon (large)"""
    score: float
    p_value: float | None
    psi: float
    drifted: bool
    count: int


@dataclass(frozen=True)
class Thresholds:
    large_window: int = 1000
    """From this many current values on, distances replace tests."""
    p_value: float = 0.01
    """A test's p-value below this is drift (per feature)."""
    wasserstein: float = 0.1
    """Wasserstein distance over the reference's standard deviation above this is drift."""
    jensen_shannon: float = 0.1
    psi: float = 0.25


def score(profile: FeatureProfile, current: Sequence[Any], thresholds: Thresholds) -> DriftScore | None:
    """The feature's drift in `current`; None for an empty window."""
    if not current:
        return None
    large = len(current) >= thresholds.large_window
    if profile.kind == "numeric":
        values = np.asarray([float(v) for v in current])
        reference = np.asarray(profile.sample)
        shift_psi = psi(profile.proportions, _bin_shares(values, profile.edges))
        if large:
            spread = float(np.std(reference)) or 1.0
            distance = float(stats.wasserstein_distance(reference, values)) / spread
            return DriftScore(profile.name, "wasserstein", distance, None, shift_psi, bool(distance > thresholds.wasserstein), len(values))
        test = stats.ks_2samp(reference, values)
        return DriftScore(profile.name, "ks", float(test.statistic), float(test.pvalue), shift_psi, bool(test.pvalue < thresholds.p_value), len(values))
    shares = _category_shares((str(v) for v in current), profile.categories)
    reference_shares = profile.proportions  # the same categories, plus the unseen-category slot
    shift_psi = psi(reference_shares, shares)
    if large:
        distance = float(jensenshannon(reference_shares, shares, base=2))
        return DriftScore(profile.name, "jensen_shannon", distance, None, shift_psi, bool(distance > thresholds.jensen_shannon), len(current))
    observed = np.asarray(shares) * len(current)
    expected = np.asarray(reference_shares) * profile.count
    table = np.vstack([expected, observed])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return DriftScore(profile.name, "chi2", 0.0, 1.0, shift_psi, False, len(current))
    chi2, p_value, _, _ = stats.chi2_contingency(table)
    p = float(p_value) if not math.isnan(p_value) else 1.0
    return DriftScore(profile.name, "chi2", float(chi2), p, shift_psi, bool(p < thresholds.p_value), len(current))


__all__ = ["DriftScore", "FeatureProfile", "Thresholds", "psi", "score"]
