"""Every upstream KServe sample is accepted: the validator is not stricter than KServe."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubemind.manifests.validator import validate_paths


def _samples_dir(crd_dir: Path) -> Path:
    samples = crd_dir.parent / "samples"
    if not samples.is_dir():
        pytest.skip("no ../shared/samples")
    return samples


def test_every_upstream_sample_is_accepted(crd_dir):
    samples = _samples_dir(crd_dir)
    result = validate_paths([samples], crd_dir)
    files = {obj.source for obj in result.objects}
    assert len(files) >= 81
    assert result.problems == []
