"""What an overlay references it defines (or lists as living outside it), and its images are tagged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kubemind.cli import main
from kubemind.manifests.references import Allowed
from kubemind.manifests.validator import validate_paths
from tests.manifests.conftest import REPO

POD = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: kubemind}
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: a}}
    spec:
      imagePullSecrets: [{name: pull}]
      containers:
        - name: a
          image: example.org/app:1.0
          env:
            - name: DB
              valueFrom: {secretKeyRef: {name: db, key: url}}
            - name: OPTIONAL
              valueFrom: {secretKeyRef: {name: maybe, key: x, optional: true}}
          envFrom: [{configMapRef: {name: settings}}]
      volumes:
        - name: certs
          secret: {secretName: certs}
"""
DEFINED = """
---
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: kubemind}
stringData: {url: postgresql://db}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: kubemind}
"""


def overlay(tmp_path: Path, *documents: str) -> Path:
    root = tmp_path / "overlay"
    root.mkdir(parents=True)
    (root / "objects.yaml").write_text("\n---\n".join(documents))
    (root / "kustomization.yaml").write_text("resources: [objects.yaml]\n")
    return root


def problems_at(result) -> dict[str, str]:
    return {p.path: p.message for p in result.problems}


def test_undefined_secret_configmap_and_pull_secret_are_reported(crd_dir, tmp_path):
    found = problems_at(validate_paths([overlay(tmp_path, POD)], crd_dir))
    prefix = "spec.template.spec"
    assert "Secret kubemind/db is not defined" in found[f"{prefix}.containers[0].env[0].valueFrom.secretKeyRef.name"]
    assert "ConfigMap kubemind/settings" in found[f"{prefix}.containers[0].envFrom[0].configMapRef.name"]
    assert "Secret kubemind/certs" in found[f"{prefix}.volumes[0].secret.secretName"]
    assert "Secret kubemind/pull" in found[f"{prefix}.imagePullSecrets[0].name"]
    # optional: true references may be absent.
    assert not any("maybe" in message for message in found.values())


def test_defined_or_allowed_references_pass(crd_dir, tmp_path):
    root = overlay(tmp_path, POD + DEFINED)
    allow = tmp_path / "external.yaml"
    allow.write_text(
        "- {kind: Secret, namespace: kubemind, name: certs, reason: cert-manager issues it}\n"
    )
    assert main(["validate", str(root), "--allow-refs", str(allow), "--allow-ref",
                 "Secret/*/pull"]) == 0


def test_sink_to_a_service_nothing_defines_is_reported(crd_dir, tmp_path):
    """The repository's cv-jobs KafkaSource, built without its worker (the worker's Service is in
    the inferenceservices rendering)."""
    root = tmp_path / "knative"
    shutil.copytree(REPO / "knative", root)
    (root / "overlays" / "dev" / "kustomization.yaml").write_text(
        "resources: [../../base]\ncomponents: [../../components/cv-jobs]\n"
    )
    found = problems_at(validate_paths([root / "overlays" / "dev"], crd_dir))
    assert found["spec.sink.ref"].startswith("Service kubemind/cv-worker is not defined")
    assert Allowed.parse("Service/kubemind/cv-worker").matches(
        next(ref for ref in _sink_refs(root) if ref.name == "cv-worker")
    )


def _sink_refs(root: Path):
    from kubemind.manifests.references import references
    from kubemind.manifests.validator import load_objects

    for obj in load_objects([root / "overlays" / "dev"]).objects:
        for _, ref in references(obj):
            yield ref


def test_inference_service_runtime_must_exist(crd_dir, tmp_path):
    isvc = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: demo, namespace: kubemind}
spec:
  predictor:
    model:
      modelFormat: {name: onnx}
      runtime: {runtime}
      storageUri: gs://b/m
"""
    found = problems_at(validate_paths([overlay(tmp_path, isvc.replace("{runtime}", "no-such"))], crd_dir))
    assert "ServingRuntime kubemind/no-such is not defined" in found["spec.predictor.model.runtime"]
    # KServe's own ClusterServingRuntimes come with KServe.
    assert validate_paths([overlay(tmp_path / "b", isvc.replace("{runtime}", "kserve-tritonserver"))],
                          crd_dir).problems == []


def test_an_isvc_defines_the_services_kserve_creates_for_it(crd_dir, tmp_path):
    isvc = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: demo, namespace: kubemind}
spec:
  predictor:
    sklearn: {storageUri: gs://b/m}
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: tick, namespace: kubemind}
spec:
  schedule: "* * * * *"
  sink: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: demo-predictor}}
"""
    assert validate_paths([overlay(tmp_path, isvc)], crd_dir).problems == []


def test_untagged_image_in_an_overlay_is_reported(crd_dir, tmp_path):
    storage = """
apiVersion: serving.kserve.io/v1alpha1
kind: ClusterStorageContainer
metadata: {name: s}
spec:
  container: {name: storage-initializer, image: kubemind/storage-initializer}
  supportedUriFormats: [{prefix: "models:/"}]
"""
    found = problems_at(validate_paths([overlay(tmp_path, storage)], crd_dir))
    assert "has no tag or digest" in found["spec.container.image"]


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_every_overlay_tags_the_storage_initializer(env):
    import yaml

    docs = yaml.safe_load_all((REPO / "inferenceservices" / "rendered" / f"{env}.yaml").read_text())
    (storage,) = [d for d in docs if d["kind"] == "ClusterStorageContainer"]
    image = storage["spec"]["container"]["image"]
    assert image.startswith("registry.kubemind.dev/kubemind/storage-initializer:")
