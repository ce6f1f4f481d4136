"""The async-jobs component (CV worker Deployment + KEDA ScaledObject) passes `kubemind validate`
when an overlay includes it, its args parse with CVWorkerSettings, and a typo in them fails."""

from __future__ import annotations

import shutil
from pathlib import Path

from kubemind.cli import main
from tests.manifests.conftest import REPO

SECRET = "- {kind: Secret, namespace: kubemind, name: kubemind-jobs, reason: the operator creates it}\n"


def with_jobs(tmp_path: Path) -> Path:
    root = tmp_path / "inferenceservices"
    shutil.copytree(REPO / "inferenceservices", root)
    (root / "overlays" / "jobs").mkdir()
    shutil.copy(root / "base" / "namespace.yaml", root / "overlays" / "jobs" / "namespace.yaml")
    (root / "overlays" / "jobs" / "kustomization.yaml").write_text(
        "resources: [namespace.yaml]\ncomponents: [../../components/async-jobs]\n"
        "images:\n  - {name: kubemind/worker-cv, newName: registry.kubemind.dev/kubemind/worker-cv, newTag: 0.1.0}\n"
    )
    return root / "overlays" / "jobs"


def test_the_worker_and_its_scaler_validate(tmp_path: Path) -> None:
    allow = tmp_path / "external.yaml"
    allow.write_text(SECRET)

    assert main(["validate", str(with_jobs(tmp_path)), "--allow-refs", str(allow)]) == 0


def test_a_worker_arg_its_settings_do_not_know_fails(tmp_path: Path, capsys) -> None:
    overlay = with_jobs(tmp_path)
    worker = overlay.parent.parent / "components" / "async-jobs" / "cv-worker.yaml"
    worker.write_text(worker.read_text().replace("--batch_size=8", "--batch_sise=8"))
    allow = tmp_path / "external.yaml"
    allow.write_text(SECRET)

    assert main(["validate", str(overlay), "--allow-refs", str(allow)]) != 0
    assert "batch_sise" in capsys.readouterr().out


def test_the_knative_variant_validates_with_its_sink(tmp_path: Path, capsys) -> None:
    """cv-jobs (the KafkaSource) with cv-worker: the sink exists, delivery has retries and a
    dead-letter sink, and the worker's args parse."""
    root = tmp_path / "knative"
    shutil.copytree(REPO / "knative", root)
    overlay = root / "overlays" / "jobs"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text(
        "resources: [../../base]\ncomponents: [../../components/cv-jobs, ../../components/cv-worker]\n"
    )
    allow = tmp_path / "external.yaml"
    allow.write_text(SECRET)

    assert main(["validate", str(overlay), "--allow-refs", str(allow)]) == 0, capsys.readouterr().out
