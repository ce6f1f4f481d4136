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
    "router args checked against the router's settings, not its image's": (
        ISVC.format(
            predictor=(
                "    containers:\n      - name: kserve-container\n"
                "        image: kubemind/transformer-image\n"
                '        command: ["/opt/kubemind/bin/python", "-m", "kubemind_transformers.router"]\n'
                '        args: ["--graph=/etc/g.yaml", "--top_k=5"]'
            )
        ),
        "spec.predictor.containers[0].args",
        "RouterSettings rejects the args: RouterSettings: error: unrecognized arguments: --top_k=5",
    ),
}


def _isvc(spec: str, annotations: str = "") -> str:
    meta = f"\n  annotations:\n{annotations}" if annotations else ""
    return (
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n"
        f"metadata:\n  name: demo{meta}\nspec:\n{spec}"
    )


def _graph(nodes: str, router_steps: str = "") -> str:
    annotations = f"\n  annotations:\n    kubemind.io/router-steps: |\n{router_steps}" if router_steps else ""
    return (
        "apiVersion: serving.kserve.io/v1alpha1\nkind: InferenceGraph\n"
        f"metadata:\n  name: g{annotations}\nspec:\n  nodes:\n{nodes}"
    )


def _runtime(spec: str, name: str = "rt") -> str:
    return (
        "apiVersion: serving.kserve.io/v1alpha1\nkind: ServingRuntime\n"
        f"metadata: {{name: {name}, namespace: kubemind}}\nspec:\n{spec}"
    )


SKLEARN = "    sklearn: {storageUri: gs://b/m}\n"
STANDARD = '    serving.kserve.io/deploymentMode: Standard\n'
WORKER = (
    "  predictor:\n    model:\n      modelFormat: {name: huggingface}\n"
    "      storageUri: pvc://models/llama\n<extra>"
    "    workerSpec:\n      containers:\n        - {name: worker-container, image: w:1}\n<worker>"
)
NONE = "    serving.kserve.io/autoscalerClass: none\n"


def _worker(extra: str, worker: str) -> str:
    return WORKER.replace("<extra>", extra).replace("<worker>", worker)
CONTAINER = "      - name: kserve-container\n        image: example.org/p:1\n"

# One case per rule of KServe's validating webhooks (see kubemind/manifests/kserve_webhooks.py).
WEBHOOK_RULES = {
    "ISVC autoscaler class KServe does not know": (
        _isvc("  predictor:\n" + SKLEARN, "    serving.kserve.io/autoscalerClass: kpa2\n"),
        'metadata.annotations["serving.kserve.io/autoscalerClass"]',
        "is not a supported autoscaler class",
    ),
    "ISVC PYTHONPATH env": (
        _isvc("  predictor:\n    sklearn:\n      storageUri: gs://b/m\n"
              "      env: [{name: PYTHONPATH, value: /x}]\n"),
        "spec.predictor.sklearn.env[0].name",
        "PYTHONPATH",
    ),
    "ISVC workerSpec with two containers": (
        _isvc(_worker(extra="", worker="        - {name: second, image: w:1}\n"), NONE),
        "spec.predictor.workerSpec.containers",
        "multiple containers in workerSpec",
    ),
    "ISVC workerSpec with TENSOR_PARALLEL_SIZE in the model env": (
        _isvc(_worker(extra="      env: [{name: TENSOR_PARALLEL_SIZE, value: '2'}]\n",
                            worker=""), NONE),
        "spec.predictor.model.env[0].name",
        "TENSOR_PARALLEL_SIZE",
    ),
    "ISVC workerSpec with gs:// storage": (
        _isvc(_worker(extra="", worker="").replace("pvc://models/llama", "gs://b/llama"), NONE),
        "spec.predictor.model.storageUri",
        "only 'pvc' and 'oci'",
    ),
    "ISVC workerSpec without the none autoscaler": (
        _isvc(_worker(extra="", worker="")),
        'metadata.annotations["serving.kserve.io/autoscalerClass"]',
        "only the 'none' autoscaler",
    ),
    "ISVC workerSpec pipelineParallelSize 0": (
        _isvc(_worker(extra="", worker="      pipelineParallelSize: 0\n"), NONE),
        "spec.predictor.workerSpec.pipelineParallelSize",
        "cannot be less than 1",
    ),
    "ISVC workerSpec with an unknown GPU resource": (
        _isvc(_worker(extra="      resources: {limits: {example.com/gpu: '1'}}\n", worker=""),
              NONE),
        "spec.predictor.model.resources",
        "unknown GPU resource type example.com/gpu",
    ),
    "ISVC collocated transformer with STORAGE_URI": (
        _isvc("  predictor:\n    containers:\n" + CONTAINER
              + "      - name: transformer-container\n        image: example.org/t:1\n"
              "        env: [{name: STORAGE_URI, value: gs://b/m}]\n"),
        "spec.predictor.containers[1].env[0]",
        "storage uri should not be specified in transformer container",
    ),
    "ISVC name in a model-format predictor": (
        _isvc("  predictor:\n    sklearn: {name: x, storageUri: gs://b/m}\n"),
        "spec.predictor.sklearn.name",
        "'name' field is not allowed",
    ),
    "ISVC storageUri and storageUris": (
        _isvc("  predictor:\n    storageUris: [{uri: gs://b/a, mountPath: /mnt/models/a}]\n"
              "    model: {modelFormat: {name: onnx}, storageUri: gs://b/m}\n"),
        "spec.predictor.storageUris",
        "Setting both StorageURI and StorageURIs",
    ),
    "ISVC storageUris with a relative mount path": (
        _isvc("  predictor:\n    storageUris: [{uri: gs://b/a, mountPath: models/a}]\n"
              "    model: {modelFormat: {name: onnx}}\n"),
        "spec.predictor.storageUris[0].mountPath",
        "must be absolute",
    ),
    "ISVC storageUris with '..' in a mount path": (
        _isvc("  predictor:\n    storageUris: [{uri: gs://b/a, mountPath: /mnt/../etc}]\n"
              "    model: {modelFormat: {name: onnx}}\n"),
        "spec.predictor.storageUris[0].mountPath",
        "cannot contain '..'",
    ),
    "ISVC storageUris without a common parent": (
        _isvc("  predictor:\n    storageUris:\n      - {uri: gs://b/a, mountPath: /a/m}\n"
              "      - {uri: gs://b/b, mountPath: /b/m}\n    model: {modelFormat: {name: onnx}}\n"),
        "spec.predictor.storageUris",
        "common parent directory",
    ),
    "ISVC transformer without an implementation": (
        _isvc("  predictor:\n" + SKLEARN + "  transformer: {minReplicas: 1}\n"),
        "spec.transformer",
        "exactly one transformer implementation",
    ),
    "ISVC ONNX storageUri with another extension": (
        _isvc("  predictor:\n    onnx: {storageUri: gs://b/model.pt}\n"),
        "spec.predictor.onnx.storageUri",
        "expected storageUri file extension: '.onnx'",
    ),
    "ISVC TensorFlow GPU runtime without a GPU": (
        _isvc("  predictor:\n    tensorflow: {storageUri: gs://b/m, runtimeVersion: 2.6.2-gpu}\n"),
        "spec.predictor.tensorflow.runtimeVersion",
        "GPU resources are not requested",
    ),
    "ISVC PyTorch CPU runtime with a GPU": (
        _isvc("  predictor:\n    pytorch:\n      storageUri: gs://b/m\n      runtimeVersion: 0.9.0\n"
              "      resources: {limits: {nvidia.com/gpu: '1'}}\n"),
        "spec.predictor.pytorch.runtimeVersion",
        "not GPU enabled but GPU resources are requested",
    ),
    "ISVC storage spec with a gs:// storageUri": (
        _isvc("  predictor:\n    onnx: {storageUri: gs://b/m, storage: {key: k, path: p}}\n"),
        "spec.predictor.onnx.storageUri",
        "with a storage spec",
    ),
    "ISVC storage spec of an unsupported type": (
        _isvc("  predictor:\n    onnx: {storage: {key: k, path: p, parameters: {type: gs}}}\n"),
        "spec.predictor.onnx.storage.parameters.type",
        "storage.spec.type must be one of",
    ),
    "ISVC custom predictor PROTOCOL v3": (
        _isvc("  predictor:\n    containers:\n" + CONTAINER + "        env: [{name: PROTOCOL, value: v3}]\n"),
        "spec.predictor.containers[0].env[0].value",
        "invalid protocol v3",
    ),
    "ISVC negative containerConcurrency": (
        _isvc("  predictor:\n    containerConcurrency: -1\n" + SKLEARN),
        "spec.predictor.containerConcurrency",
        "cannot be less than 0",
    ),
    "ISVC logger storage without its key": (
        _isvc("  predictor:\n    logger: {mode: all, storage: {path: /logs, parameters: {type: s3}}}\n"
              + SKLEARN),
        "spec.predictor.logger.storage",
        "key must be set",
    ),
    "ISVC HPA with the concurrency metric": (
        _isvc("  predictor:\n    scaleMetric: concurrency\n" + SKLEARN,
              STANDARD + "    serving.kserve.io/autoscalerClass: hpa\n"),
        "spec.predictor.scaleMetric",
        "not a supported metric for the HPA",
    ),
    "ISVC HPA with a target over 100": (
        _isvc("  predictor:\n    scaleMetric: cpu\n    scaleTarget: 150\n" + SKLEARN,
              STANDARD + "    serving.kserve.io/autoscalerClass: hpa\n"),
        "spec.predictor.scaleTarget",
        "[1-100]",
    ),
    "ISVC HPA with an External autoScaling metric": (
        _isvc("  predictor:\n    autoScaling:\n      metrics:\n        - type: External\n"
              "          external: {metric: {query: up}, target: {type: Value, value: '1'}}\n"
              + SKLEARN, STANDARD + "    serving.kserve.io/autoscalerClass: hpa\n"),
        "spec.predictor.autoScaling.metrics[0].type",
        "valid: Resource",
    ),
    "ISVC Knative autoscaler with the cpu metric": (
        _isvc("  predictor:\n    scaleMetric: cpu\n" + SKLEARN),
        "spec.predictor.scaleMetric",
        "not a supported metric for the Knative autoscaler",
    ),
    "ISVC Knative autoscaler with rps target 0": (
        _isvc("  predictor:\n    scaleMetric: rps\n    scaleTarget: 0\n" + SKLEARN),
        "spec.predictor.scaleTarget",
        "rps should be greater than 1",
    ),
    "ISVC deploymentStrategy in Knative mode": (
        _isvc("  predictor:\n    deploymentStrategy: {type: Recreate}\n" + SKLEARN),
        "spec.predictor.deploymentStrategy",
        "only supported for raw deployment",
    ),
    "ISVC KEDA with a scaleMetric": (
        _isvc("  predictor:\n    scaleMetric: cpu\n" + SKLEARN,
              STANDARD + "    serving.kserve.io/autoscalerClass: keda\n"),
        "spec.predictor.scaleMetric",
        "not supported for KEDA",
    ),
    "ISVC KEDA external metric without a query": (
        _isvc("  predictor:\n    autoScaling:\n      metrics:\n        - type: External\n"
              "          external: {metric: {backend: prometheus}, target: {type: Value, value: '1'}}\n"
              + SKLEARN, STANDARD + "    serving.kserve.io/autoscalerClass: keda\n"),
        "spec.predictor.autoScaling.metrics[0].external.metric.query",
        "the query should not be empty",
    ),
    "ISVC KEDA cpu target by AverageValue": (
        _isvc("  predictor:\n    autoScaling:\n      metrics:\n        - type: Resource\n"
              "          resource: {name: cpu, target: {type: AverageValue, averageValue: '1'}}\n"
              + SKLEARN, STANDARD + "    serving.kserve.io/autoscalerClass: keda\n"),
        "spec.predictor.autoScaling.metrics[0].resource.target.type",
        "cpu target value type should be Utilization",
    ),
    "ISVC KEDA memory target under 1 MiB": (
        _isvc("  predictor:\n    autoScaling:\n      metrics:\n        - type: Resource\n"
              "          resource: {name: memory, target: {type: AverageValue, averageValue: 10Ki}}\n"
              + SKLEARN, STANDARD + "    serving.kserve.io/autoscalerClass: keda\n"),
        "spec.predictor.autoScaling.metrics[0].resource.target.averageValue",
        "greater than 1 MiB",
    ),
    "ISVC confidential serving without storageUri": (
        _isvc("  predictor:\n    model:\n      modelFormat: {name: onnx}\n"
              "      confidential: {enabled: true, resourceId: r}\n"),
        "spec.predictor.model.storageUri",
        "confidential model serving requires storageUri",
    ),
    "InferenceGraph without a root node": (
        _graph("    first: {routerType: Sequence, steps: [{serviceName: a}]}\n"),
        "spec.nodes",
        "root node not found",
    ),
    "InferenceGraph with two steps of one name": (
        _graph("    root:\n      routerType: Sequence\n"
               "      steps: [{name: s, serviceName: a}, {name: s, serviceName: b}]\n"),
        "spec.nodes.root.steps[1].name",
        "more than one step named 's'",
    ),
    "InferenceGraph step without a target": (
        _graph("    root: {routerType: Sequence, steps: [{name: s}]}\n"),
        "spec.nodes.root.steps[0]",
        "names no inference target",
    ),
    "InferenceGraph step with two targets": (
        _graph("    root: {routerType: Sequence, steps: [{serviceName: a, serviceUrl: 'http://b'}]}\n"),
        "spec.nodes.root.steps[0]",
        "more than one of nodeName, serviceName, serviceUrl",
    ),
    "InferenceGraph splitter weights not summing to 100": (
        _graph("    root:\n      routerType: Splitter\n"
               "      steps: [{serviceName: a, weight: 50}, {serviceName: b, weight: 40}]\n"),
        "spec.nodes.root.steps",
        "sum to 90, not 100",
    ),
    "InferenceGraph splitter step without a weight": (
        _graph("    root:\n      routerType: Splitter\n"
               "      steps: [{serviceName: a, weight: 100}, {serviceName: b}]\n"),
        "spec.nodes.root.steps[1].weight",
        "missing its weight",
    ),
    "InferenceGraph whose steps come back to root": (
        _graph("    root: {routerType: Sequence, steps: [{name: a, nodeName: n}]}\n"
               "    n: {routerType: Sequence, steps: [{name: b, nodeName: root}]}\n"),
        "spec.nodes.n.steps[0].nodeName",
        "cycle root.steps[0] 'a' -> node 'n' -> n.steps[0] 'b' -> node 'root'",
    ),
    "InferenceGraph step naming an unknown node": (
        _graph("    root: {routerType: Sequence, steps: [{name: a, nodeName: nope}]}\n"),
        "spec.nodes.root.steps[0].nodeName",
        "unknown node 'nope' at root.steps[0] 'a' -> node 'nope'",
    ),
    "InferenceGraph router-steps naming a step the graph lacks": (
        _graph("    root: {routerType: Sequence, steps: [{name: a, serviceName: a}]}\n",
               "      b: {protocol: grpc-v2}\n"),
        'metadata.annotations["kubemind.io/router-steps"]',
        "names unknown service step(s) b (steps: a)",
    ),
    "InferenceGraph router-steps with an unknown protocol": (
        _graph("    root: {routerType: Sequence, steps: [{name: a, serviceName: a}]}\n",
               "      a: {protocol: websocket}\n"),
        'metadata.annotations["kubemind.io/router-steps"]',
        "a.protocol: 'websocket' is not one of grpc-v2, v2, openai-chat, generate",
    ),
    "InferenceGraph router-steps prompt with an undefined field": (
        _graph("    root: {routerType: Sequence, steps: [{name: a, serviceName: a}]}\n",
               "      a: {protocol: openai-chat, prompt: 'Describe {label}'}\n"),
        'metadata.annotations["kubemind.io/router-steps"]',
        "a.prompt: field(s) label have no entry in values",
    ),
    "ServingRuntime PYTHONPATH env": (
        _runtime("  supportedModelFormats: [{name: onnx}]\n  containers:\n"
                 "    - {name: kserve-container, image: r:1, env: [{name: PYTHONPATH, value: /x}]}\n"),
        "spec.containers[0].env[0].name",
        "not allowed for security reasons",
    ),
    "ServingRuntime one format at two priorities": (
        _runtime("  supportedModelFormats:\n    - {name: onnx, autoSelect: true, priority: 1}\n"
                 "    - {name: onnx, version: '1', autoSelect: true, priority: 2}\n"
                 "  containers: [{name: kserve-container, image: r:1}]\n"),
        "spec.supportedModelFormats",
        "different priorities assigned for the model format onnx",
    ),
    "ServingRuntime workerSpec tensorParallelSize 0": (
        _runtime("  supportedModelFormats: [{name: vllm}]\n"
                 "  containers: [{name: kserve-container, image: r:1}]\n"
                 "  workerSpec: {tensorParallelSize: 0, containers: [{name: worker-container, image: w:1}]}\n"),
        "spec.workerSpec.tensorParallelSize",
        "cannot be less than 1",
    ),
    "ServingRuntime workerSpec with PIPELINE_PARALLEL_SIZE env": (
        _runtime("  supportedModelFormats: [{name: vllm}]\n  containers:\n"
                 "    - {name: kserve-container, image: r:1, env: [{name: PIPELINE_PARALLEL_SIZE, value: '2'}]}\n"
                 "  workerSpec: {containers: [{name: worker-container, image: w:1}]}\n"),
        "spec.containers[0].env[0].name",
        "PIPELINE_PARALLEL_SIZE",
    ),
    "two ServingRuntimes auto-selected at one priority": (
        "\n---\n".join(
            _runtime("  protocolVersions: [v2]\n"
                     "  supportedModelFormats: [{name: onnx, autoSelect: true, priority: 1}]\n"
                     "  containers: [{name: kserve-container, image: r:1}]\n", name)
            for name in ("first", "second")
        ),
        "spec.supportedModelFormats",
        "same priority assigned for the model format onnx in the ServingRuntimes first and second",
    ),
    "TrainedModel name with a space": (
        "apiVersion: serving.kserve.io/v1alpha1\nkind: TrainedModel\nmetadata: {name: 'my model'}\n"
        "spec: {inferenceService: s, model: {framework: sklearn, memory: 1Gi, storageUri: gs://b/m}}\n",
        "metadata.name",
        "alphanumeric characters, '_' or '-'",
    ),
    "TrainedModel storageUri scheme": (
        "apiVersion: serving.kserve.io/v1alpha1\nkind: TrainedModel\nmetadata: {name: tm}\n"
        "spec: {inferenceService: s, model: {framework: sklearn, memory: 1Gi, storageUri: 'pvc://v/m'}}\n",
        "spec.model.storageUri",
        "must start with one of s3://, gs://, https://, http://",
    ),
}
BROKEN.update(WEBHOOK_RULES)


@pytest.mark.parametrize(("manifest", "path", "message"), BROKEN.values(), ids=list(BROKEN))
def test_broken_manifest_is_rejected_at_its_field(crd_dir, tmp_path, manifest, path, message):
    file = tmp_path / "broken.yaml"
    file.write_text(manifest)
    result = validate_paths([file], crd_dir)
    paths: dict[str, list[str]] = {}
    for problem in result.problems:
        paths.setdefault(problem.path, []).append(problem.message)
    assert path in paths, f"expected a problem at {path}, got {paths}"
    assert any(message in found for found in paths[path]), paths[path]


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
