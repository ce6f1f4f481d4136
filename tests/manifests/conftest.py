"""Shared fixtures: the CRD folder (skip when ../shared/crds is absent) and a validate helper."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubemind.manifests.crd_catalog import default_crd_dir

REPO = Path(__file__).resolve().parents[2]
TREES = ("inferenceservices", "knative", "istio")
ENVIRONMENTS = ("dev", "staging", "prod")
# Istio has no CRD for EnvoyFilter in ../shared/crds; the local rate limit needs one.
UNCHECKED_KINDS = frozenset({"networking.istio.io/EnvoyFilter"})


@pytest.fixture(scope="session")
def crd_dir() -> Path:
    crds = default_crd_dir()
    if crds is None or not crds.is_dir():
        pytest.skip("no CRD folder (../shared/crds or $KUBEMIND_CRDS)")
    return crds
