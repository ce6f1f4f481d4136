"""Deliberately broken manifests: each is rejected, at the field a user has to fix."""

from __future__ import annotations

import pytest
import yaml

from kubemind.cli import main
from kubemind.manifests.validator import validate_paths

ISVC = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: demo
spec:
  predictor:
{predictor}
"""

BROKEN = {
    "misspelled field": (
        ISVC.format(predictor="    sklearn:\n      storagUri: gs://bucket/model"),
        "spec.predictor.sklearn.storagUri",
        "unknown field",
    ),
    "string where an integer belongs": (
        ISVC.format(predictor='    minReplicas: "two"\n    sklearn:\n      storageUri: gs://b/m'),
        "spec.predictor.minReplicas",
        "must be of type integer",
    ),
    "two predictor implementations": (
        ISVC.format(
            predictor="    sklearn:\n      storageUri: gs://b/m\n    pytorch:\n      storageUri: gs://b/n"
        ),
        "spec.predictor",
        "exactly one predictor implementation",
    ),
    "canary 150": (
        ISVC.format(
            predictor="    canaryTrafficPercent: 150\n    sklearn:\n      storageUri: gs://b/m"
        ),
        "spec.predictor.canaryTrafficPercent",
        "between 0 and 100",
    ),
    "min > max replicas": (
        ISVC.format(
            predictor="    minReplicas: 5\n    maxReplicas: 2\n    sklearn:\n      storageUri: gs://b/m"
        ),
        "spec.predictor.minReplicas",
        "greater than maxReplicas",
    ),
    "unsupported storage URI scheme": (
        ISVC.format(predictor="    sklearn:\n      storageUri: ftp://b/m"),
        "spec.predictor.sklearn.storageUri",
        "unsupported storage URI scheme 'ftp'",
    ),
    "registry alias not pinned": (
        ISVC.format(predictor="    sklearn:\n      storageUri: models:/iris@champion"),
        "spec.predictor.sklearn.storageUri",
        "not pinned",
    ),
    "bad logger mode": (
        ISVC.format(
            predictor="    logger:\n      mode: sometimes\n    sklearn:\n      storageUri: gs://b/m"
        ),
        "spec.predictor.logger.mode",
        "unsupported value 'sometimes'",
    ),
    "name KServe rejects": (
        ISVC.format(predictor="    sklearn:\n      storageUri: gs://b/m").replace(
            "name: demo", "name: 1demo"
        ),
        "metadata.name",
        "start with a letter",
    ),
    "bad mTLS mode": (
        """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: kubemind}
spec:
  mtls: {mode: STRICTLY}
""",
        "spec.mtls.mode",
        "unsupported value 'STRICTLY'",
    ),
    "KafkaSource without bootstrap servers": (
        """
apiVersion: sources.knative.dev/v1
kind: KafkaSource
metadata: {name: cv-jobs, namespace: kubemind}
spec:
  topics: [cv-jobs]
  sink: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: cv-worker}}
""",
        "spec.bootstrapServers",
        "required field is missing",
    ),
    "CEL rule (Gateway TLS with two credential sources)": (
        """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: g, namespace: kubemind}
spec:
  selector: {istio: ingressgateway}
  servers:
    - port: {number: 443, name: https, protocol: HTTPS}
      hosts: ["a.models.kubemind.dev"]
      tls: {mode: SIMPLE, credentialName: a, credentialNames: [b]}
""",
        "spec.servers[0].tls",
        "only one of credentialName or credentialNames",
    ),
    "Knative ConfigMap key upstream does not read": (
        """
apiVersion: v1
kind: ConfigMap
metadata: {name: config-autoscaler, namespace: knative-serving}
data:
  stable-windw: "120s"
""",
        "data.stable-windw",
        "did you mean stable-window",
    ),
    "core kind with a misspelled field": (
        """
apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  prots: [{port: 80}]
""",
        "spec.prots",
        "unknown field",
    ),
    "container args a settings class rejects": (
        ISVC.format(
            predictor=(
                "    containers:\n      - name: kserve-container\n"
                "        image: registry.kubemind.dev/kubemind/predictor-simple:0.1.0\n"
                '        args: ["--http_port", "notanint"]'
            )
        ),
        "spec.predictor.containers[0].args",
        "http_port",
    ),
    "container args with an unknown flag": (
        ISVC.format(
            predictor=(
                "    containers:\n      - name: kserve-container\n"
                "        image: kubemind/predictor-simple\n"
                '        args: ["--no_such_flag=1"]'
            )
        ),
        "spec.predictor.containers[0].args",
        "unrecognized arguments: --no_such_flag=1",
    ),
}


@pytest.mark.parametrize(("manifest", "path", "message"), BROKEN.values(), ids=list(BROKEN))
def test_broken_manifest_is_rejected_at_its_field(crd_dir, tmp_path, manifest, path, message):
    file = tmp_path / "broken.yaml"
    file.write_text(manifest)
    result = validate_paths([file], crd_dir)
    paths = {p.path: p.message for p in result.problems}
    assert path in paths, f"expected a problem at {path}, got {paths}"
    assert message in paths[path]


def test_the_fixed_manifest_is_accepted(crd_dir, tmp_path):
    """The broken cases differ from a valid object only in the break."""
    file = tmp_path / "ok.yaml"
    file.write_text(
        ISVC.format(
            predictor="    minReplicas: 1\n    maxReplicas: 2\n    sklearn:\n      storageUri: models:/iris/3"
        )
    )
    assert validate_paths([file], crd_dir).problems == []


def test_cli_reports_file_object_path_and_message_and_exits_1(crd_dir, tmp_path, capsys):
    file = tmp_path / "broken.yaml"
    file.write_text(BROKEN["canary 150"][0])
    assert main(["validate", "--crds", str(crd_dir), str(file)]) == 1
    out = capsys.readouterr().out
    assert (
        f"{file}: InferenceService/demo: spec.predictor.canaryTrafficPercent: 150 is not a percentage"
        in out
    )


def test_cli_exits_0_when_everything_validates(crd_dir, tmp_path, capsys):
    file = tmp_path / "ok.yaml"
    file.write_text(ISVC.format(predictor="    sklearn:\n      storageUri: gs://b/m"))
    assert main(["validate", "--crds", str(crd_dir), "--format", "json", str(file)]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == {"objects_checked": 1, "problems": []}


def test_size_prints_requests_and_limits(capsys):
    assert main(["size", "--params", "8e9", "--dtype", "float16", "--kv-cache-gib", "8"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    # 8e9 x 2 bytes = 14.9 GiB weights + 8 GiB KV + 1.5 GiB overhead = 24.4 -> 25Gi; x1.25 -> 31Gi
    assert out == {"resources": {"requests": {"memory": "25Gi"}, "limits": {"memory": "31Gi"}}}
