"""Shared fixtures: the CRD folder the validator checks against (the copy in the package)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubemind.manifests.crd_catalog import PACKAGED_CRDS

REPO = Path(__file__).resolve().parents[2]
# The upstream data the packaged CRDs are copied from, next to a checkout (absent in a clone).
SHARED = REPO.parent / "shared"
TREES = ("inferenceservices", "knative", "istio")
ENVIRONMENTS = ("dev", "staging", "prod")
# Overlays of one tree only: `kubemind up` runs inferenceservices/overlays/local on one machine.
LOCAL_OVERLAYS = {"inferenceservices": ("local",)}


@pytest.fixture(scope="session")
def crd_dir() -> Path:
    return PACKAGED_CRDS
