"""`kubemind validate` carries its CRDs: it works from any folder, and the copy stays current."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from kubemind.cli import main
from kubemind.manifests.crd_catalog import PACKAGED_CRDS, default_crd_dir
from tests.manifests.conftest import REPO, SHARED
from tests.manifests.test_upstream_samples import _differences


def test_packaged_crds_equal_shared_crds():
    if not (SHARED / "crds").is_dir():
        pytest.skip("no ../shared/crds next to this checkout to compare with")
    # kubemind/ holds the project's own CRDs (RolloutPolicy), not upstream data.
    own = [name for name in _differences(SHARED / "crds", PACKAGED_CRDS) if not name.startswith("kubemind/")]
    assert own == [], (
        "kubemind/manifests/crds differs from ../shared/crds: copy it again"
        " (cp -r ../shared/crds/. kubemind/manifests/crds/)"
    )


def test_packaged_crds_include_every_kind_the_manifests_use():
    names = {path.name for path in PACKAGED_CRDS.rglob("*.yaml")}
    for expected in (
        "serving.kserve.io_inferenceservices.yaml",
        "envoyfilters.networking.istio.io.yaml",
        "monitoring.coreos.com_servicemonitors.yaml",
        "keda.sh_scaledobjects.yaml",
        "100-kafka-source.yaml",
    ):
        assert expected in names
    assert (PACKAGED_CRDS / "SOURCES.md").is_file()


def test_default_is_the_packaged_copy(monkeypatch):
    monkeypatch.delenv("KUBEMIND_CRDS", raising=False)
    assert default_crd_dir() == PACKAGED_CRDS


def test_missing_crd_folder_is_reported(tmp_path, capsys):
    manifest = tmp_path / "ok.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    assert main(["validate", "--crds", "/nope", str(manifest)]) == 1
    out = capsys.readouterr().out
    assert "/nope" in out and "does not exist" in out


def test_validate_from_a_folder_outside_the_repository(tmp_path):
    """A user's copy of an overlay, validated with the installed package and no ../shared."""
    work = tmp_path / "elsewhere"
    shutil.copytree(REPO / "inferenceservices", work / "inferenceservices")
    shutil.copy(REPO / "knative" / "base" / "config-autoscaler.yaml", work / "config-autoscaler.yaml")
    shutil.copy(REPO / "external-objects.yaml", work / "external-objects.yaml")
    env = {k: v for k, v in os.environ.items() if k != "KUBEMIND_CRDS"}
    result = subprocess.run(
        [sys.executable, "-m", "kubemind.cli", "validate",
         "inferenceservices/overlays/prod", "config-autoscaler.yaml",
         "--allow-refs", "external-objects.yaml"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok in" in result.stdout
