"""Every upstream KServe sample is accepted: the validator is not stricter than KServe.

The samples are kept in the repository (tests/manifests/upstream/samples, a copy of
../shared/samples), so the test runs in a clone without ../shared.
"""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from kubemind.manifests.validator import validate_paths
from tests.manifests.conftest import SHARED

SAMPLES = Path(__file__).parent / "upstream" / "samples"
# Samples KServe's own webhook rejects today, with the rule: they predate it upstream.
STALE = {
    # kserve/kserve#4535 (2025-07) refuses `name` in a model-format predictor; this
    # multi-model-serving doc sample (2021) still sets it.
    "kserve/docs/samples/multimodelserving/sklearn/inferenceservice.yaml": (
        "spec.predictor.sklearn.name",
        "the 'name' field is not allowed in standard predictor",
    ),
}


def test_every_upstream_sample_is_accepted(crd_dir):
    result = validate_paths([SAMPLES], crd_dir)
    files = {obj.source for obj in result.objects}
    assert len(files) >= 81
    found = {
        (str(Path(p.source).relative_to(SAMPLES)), p.path, p.message) for p in result.problems
    }
    assert found == {(file, path, message) for file, (path, message) in STALE.items()}


def test_the_sample_copy_equals_shared_samples():
    if not (SHARED / "samples").is_dir():
        pytest.skip("no ../shared/samples next to this checkout to compare with")
    assert _differences(SHARED / "samples", SAMPLES) == []


def _differences(left: Path, right: Path) -> list[str]:
    """Relative paths that are missing on one side or differ in content."""
    names = {p.relative_to(left) for p in left.rglob("*") if p.is_file()}
    names |= {p.relative_to(right) for p in right.rglob("*") if p.is_file()}
    return sorted(
        str(name)
        for name in names
        if not ((left / name).is_file() and (right / name).is_file())
        or not filecmp.cmp(left / name, right / name, shallow=False)
    )
