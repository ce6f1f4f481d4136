"""The rest of KServe's validating webhooks, checked offline.

Ported rule by rule from KServe 0.20's webhooks (read, not copied):
`pkg/apis/serving/v1beta1/inference_service_validation.go` and `component.go` with the
per-framework `Validate()` methods, `pkg/apis/serving/v1alpha1/inference_graph_validation.go`,
`pkg/webhook/admission/servingruntime/servingruntime_webhook.go` and
`pkg/apis/serving/v1alpha1/trainedmodel_webhook.go`. `admission.py` holds the first rules
(names, one implementation, replicas, canary percentage, storage URIs, logger URL); this
module the others. Update-only rules (deployment mode and predictor name changes, TrainedModel
memory, removing a runtime's workerSpec) compare with the stored object: nothing to compare here.
Rules the webhook evaluates against other objects in the cluster (ServingRuntime priorities)
are evaluated against the other objects of the same rendering.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from posixpath import splitext
from typing import Any

from kubemind.manifests.problems import FieldPath, ManifestObject, Problem

MODEL_FORMATS = (
    "sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "huggingface", "pmml",
    "lightgbm", "paddle", "model",
)
COMPONENTS = ("predictor", "transformer", "explainer")
BLOCKED_ENV = ("PYTHONPATH",)  # validation.DefaultBlockedEnvVars
AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
ALLOWED_AUTOSCALER_CLASSES = ("hpa", "external", "keda", "none")
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
STANDARD_MODES = ("Standard", "RawDeployment")
KNATIVE_CLASS = "autoscaling.knative.dev/class"
KNATIVE_HPA = "hpa.autoscaling.knative.dev"
GPU_TYPES_ANNOTATION = "serving.kserve.io/gpu-resource-types"
DEFAULT_GPU_TYPES = ("nvidia.com/gpu", "amd.com/gpu", "intel.com/gpu", "habana.ai/gaudi")
BASIC_RESOURCES = ("cpu", "memory", "storage", "ephemeral-storage")
PARALLEL_ENV = ("PIPELINE_PARALLEL_SIZE", "TENSOR_PARALLEL_SIZE")
STORAGE_SPEC_PREFIXES = ("s3://", "hdfs://", "webhdfs://")
# The implementations whose Validate() checks a `storage:` spec (validateStorageSpec).
STORAGE_SPEC_FORMATS = ("huggingface", "onnx", "pmml", "tensorflow", "pytorch")
TRAINED_MODEL_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
TRAINED_MODEL_PREFIXES = ("s3://", "gs://", "https://", "http://")


def check_webhooks(obj: ManifestObject, spec: dict[str, Any]) -> Iterator[Problem]:
    if obj.kind == "InferenceService":
        yield from _inference_service(obj, spec)
    elif obj.kind == "InferenceGraph":
        yield from _inference_graph(obj, spec)
    elif obj.kind in ("ServingRuntime", "ClusterServingRuntime"):
        yield from _serving_runtime(obj, spec)
    elif obj.kind == "TrainedModel":
        yield from _trained_model(obj, spec)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _annotations(obj: ManifestObject) -> dict[str, str]:
    return {str(k): str(v) for k, v in _dict(_dict(obj.body.get("metadata")).get("annotations")).items()}


# --- InferenceService ---------------------------------------------------------------------


def _inference_service(obj: ManifestObject, spec: dict[str, Any]) -> Iterator[Problem]:
    annotations = _annotations(obj)
    autoscaler = annotations.get(AUTOSCALER_CLASS)
    if autoscaler is not None and autoscaler not in ALLOWED_AUTOSCALER_CLASSES:
        yield Problem.at(
            obj, ("metadata", "annotations", AUTOSCALER_CLASS),
            f"[{autoscaler}] is not a supported autoscaler class type"
            f" (one of {', '.join(ALLOWED_AUTOSCALER_CLASSES)})",
        )
    predictor = _dict(spec.get("predictor"))
    yield from _blocked_env(obj, spec)
    yield from _multi_node(obj, predictor, annotations)
    yield from _collocated_transformer(obj, predictor)
    for key in MODEL_FORMATS:
        if isinstance(predictor.get(key), dict) and predictor[key].get("name"):
            yield Problem.at(obj, ("spec", "predictor", key, "name"),
                             "the 'name' field is not allowed in standard predictor")
    for component in COMPONENTS:
        section = spec.get(component)
        if not isinstance(section, dict):
            continue
        path: FieldPath = ("spec", component)
        yield from _storage_uris(obj, component, section, path)
        if component != "predictor":
            yield from _one_implementation(obj, component, section, path)
        yield from _implementation(obj, component, section, path)
        yield from _extensions(obj, section, path)
        yield from _autoscaling(obj, section, path, annotations)
    yield from _confidential(obj, predictor)


def _containers(section: dict[str, Any], key: str = "containers") -> list[dict[str, Any]]:
    return [c for c in _list(section.get(key)) if isinstance(c, dict)]


def _env_names(container: dict[str, Any]) -> list[str]:
    return [str(e.get("name")) for e in _list(container.get("env")) if isinstance(e, dict)]


def _blocked_env(obj: ManifestObject, spec: dict[str, Any]) -> Iterator[Problem]:
    places: list[tuple[FieldPath, dict[str, Any]]] = []
    for component in COMPONENTS:
        section = _dict(spec.get(component))
        for key in ("containers", "initContainers"):
            places += [(("spec", component, key, i), c) for i, c in enumerate(_containers(section, key))]
        for fmt in (*MODEL_FORMATS, "art"):
            if isinstance(section.get(fmt), dict):
                places.append((("spec", component, fmt), section[fmt]))
        worker = _dict(section.get("workerSpec"))
        for key in ("containers", "initContainers"):
            places += [(("spec", component, "workerSpec", key, i), c)
                       for i, c in enumerate(_containers(worker, key))]
    for path, container in places:
        for index, name in enumerate(_env_names(container)):
            if name in BLOCKED_ENV:
                yield Problem.at(obj, (*path, "env", index, "name"),
                                 f"setting {name} in container {container.get('name', '')!r}"
                                 " is not allowed for security reasons")


def _gpu_types(annotations: dict[str, str]) -> set[str] | None:
    """The GPU resource names KServe accepts, or None when the annotation is not valid JSON."""
    types = set(DEFAULT_GPU_TYPES)
    extra = annotations.get(GPU_TYPES_ANNOTATION)
    if extra:
        try:
            parsed = json.loads(extra)
        except ValueError:
            return None
        if not isinstance(parsed, list) or not all(isinstance(t, str) and t for t in parsed):
            return None
        types.update(parsed)
    return types


def _unknown_gpu(resources: Any, annotations: dict[str, str]) -> list[str] | None:
    known = _gpu_types(annotations)
    if known is None:
        return None
    names = {str(k) for part in ("limits", "requests") for k in _dict(_dict(resources).get(part))}
    return sorted(n for n in names if n not in BASIC_RESOURCES and n not in known)


def _gpu_problem(
    obj: ManifestObject, resources: Any, annotations: dict[str, str], path: FieldPath
) -> Iterator[Problem]:
    unknown = _unknown_gpu(resources, annotations)
    if unknown is None:
        yield Problem.at(obj, ("metadata", "annotations", GPU_TYPES_ANNOTATION),
                         "must be a JSON array of non-empty resource names")
    elif unknown:
        yield Problem.at(obj, path,
                         f"unknown GPU resource type {', '.join(unknown)}: set the"
                         f" '{GPU_TYPES_ANNOTATION}' annotation to use a custom GPU resource type")


def _parallel_sizes(obj: ManifestObject, worker: dict[str, Any], path: FieldPath) -> Iterator[Problem]:
    for key in ("pipelineParallelSize", "tensorParallelSize"):
        value = worker.get(key)
        if isinstance(value, int) and value < 1:
            yield Problem.at(obj, (*path, key), f"workerSpec.{key} cannot be less than 1 ({value})")


def _multi_node(
    obj: ManifestObject, predictor: dict[str, Any], annotations: dict[str, str]
) -> Iterator[Problem]:
    worker = predictor.get("workerSpec")
    if not isinstance(worker, dict):
        return
    path: FieldPath = ("spec", "predictor", "workerSpec")
    if len(_containers(worker)) > 1:
        yield Problem.at(obj, (*path, "containers"),
                         "setting multiple containers in workerSpec is not allowed")
    model = predictor.get("model")
    if isinstance(model, dict):
        for index, name in enumerate(_env_names(model)):
            if name in PARALLEL_ENV:
                yield Problem.at(obj, ("spec", "predictor", "model", "env", index, "name"),
                                 f"setting {name} in environment variables is not allowed"
                                 " with a workerSpec (use workerSpec's parallel sizes)")
        yield from _gpu_problem(obj, model.get("resources"), annotations,
                                ("spec", "predictor", "model", "resources"))
        uri = model.get("storageUri")
        if not isinstance(uri, str):
            yield Problem.at(obj, ("spec", "predictor", "model", "storageUri"),
                             "storageUri must be set for multi-node (workerSpec)")
        elif uri.split("://")[0] not in ("pvc", "oci"):
            yield Problem.at(obj, ("spec", "predictor", "model", "storageUri"),
                             f"multi-node supports only 'pvc' and 'oci' storage ({uri.split('://')[0]})")
        if annotations.get(AUTOSCALER_CLASS) != "none":
            yield Problem.at(obj, ("metadata", "annotations", AUTOSCALER_CLASS),
                             "multi-node (workerSpec) supports only the 'none' autoscaler class"
                             f" ({annotations.get(AUTOSCALER_CLASS, 'unset')})")
    yield from _parallel_sizes(obj, worker, path)
    for index, container in enumerate(_containers(worker)):
        yield from _gpu_problem(obj, container.get("resources"), annotations,
                                (*path, "containers", index, "resources"))


def _collocated_transformer(obj: ManifestObject, predictor: dict[str, Any]) -> Iterator[Problem]:
    for index, container in enumerate(_containers(predictor)):
        if container.get("name") == "transformer-container":
            for env_index, name in enumerate(_env_names(container)):
                if name == "STORAGE_URI":
                    yield Problem.at(obj, ("spec", "predictor", "containers", index, "env", env_index),
                                     "storage uri should not be specified in transformer container")
            return


def _implementation_keys(component: str, section: dict[str, Any]) -> list[str]:
    if component == "predictor":
        return [k for k in MODEL_FORMATS if isinstance(section.get(k), dict)]
    if component == "explainer":
        return ["art"] if isinstance(section.get("art"), dict) else []
    return []


def _one_implementation(
    obj: ManifestObject, component: str, section: dict[str, Any], path: FieldPath
) -> Iterator[Problem]:
    found = _implementation_keys(component, section)
    if _containers(section):
        found.append("containers")
    if len(found) != 1:
        options = "art, containers" if component == "explainer" else "containers"
        yield Problem.at(obj, path,
                         f"exactly one {component} implementation is required"
                         f" ({'found ' + ', '.join(found) if found else 'found none'}); one of: {options}")


def _storage_uri(section: dict[str, Any], component: str) -> tuple[FieldPath, str] | None:
    """The storageUri of a component's implementation (model format, or its first container)."""
    for key in _implementation_keys(component, section):
        if isinstance(section[key].get("storageUri"), str):
            return (key, "storageUri"), section[key]["storageUri"]
    if isinstance(section.get("storageUri"), str):
        return ("storageUri",), section["storageUri"]
    return None


def _storage_uris(
    obj: ManifestObject, component: str, section: dict[str, Any], path: FieldPath
) -> Iterator[Problem]:
    uris = section.get("storageUris")
    if uris is None:
        return
    if _storage_uri(section, component) is not None:
        yield Problem.at(obj, (*path, "storageUris"),
                         "Setting both StorageURI and StorageURIs is not supported.")
    plain: list[str] = []
    pvc: list[str] = []
    for index, item in enumerate(_list(uris)):
        item = _dict(item)
        here: FieldPath = (*path, "storageUris", index)
        uri, mount = str(item.get("uri") or ""), str(item.get("mountPath") or "")
        if not uri:
            yield Problem.at(obj, (*here, "uri"), "storage URI cannot be empty")
        if mount == "/":
            yield Problem.at(obj, (*here, "mountPath"), "storage path cannot be empty ('/')")
        elif not mount.startswith("/"):
            yield Problem.at(obj, (*here, "mountPath"), f"storage path must be absolute: {mount!r}")
        elif ".." in mount:
            yield Problem.at(obj, (*here, "mountPath"),
                             f"storage path cannot contain '..' for security reasons: {mount}")
        (pvc if uri.startswith("pvc://") else plain).append(mount)
    if len(plain) <= 1:
        return
    if len(pvc) != len(set(pvc)):
        yield Problem.at(obj, (*path, "storageUris"), "PVC storage paths must be unique")
    parts = [p.strip("/").split("/") for p in plain]
    common = 0
    while all(len(p) > common and p[common] == parts[0][common] for p in parts):
        common += 1
    if common == 0:
        yield Problem.at(obj, (*path, "storageUris"),
                         f"storage paths must have a common parent directory beyond root: {plain}")


def _gpu_enabled(resources: Any) -> bool:
    limits = _dict(_dict(resources).get("limits"))
    return any(k == "nvidia.com/gpu" or str(k).startswith("nvidia.com/mig-") for k in limits)


def _implementation(
    obj: ManifestObject, component: str, section: dict[str, Any], path: FieldPath
) -> Iterator[Problem]:
    for key in _implementation_keys(component, section):
        impl = section[key]
        here: FieldPath = (*path, key)
        uri = impl.get("storageUri") if isinstance(impl.get("storageUri"), str) else None
        if key == "onnx" and uri is not None:
            ext = splitext(uri)[1]
            if ext not in ("", ".onnx"):
                yield Problem.at(obj, (*here, "storageUri"),
                                 f"expected storageUri file extension: '.onnx' but got '{ext}'")
        if key in ("tensorflow", "pytorch") and isinstance(impl.get("runtimeVersion"), str):
            gpu, suffix = _gpu_enabled(impl.get("resources")), "-gpu" in impl["runtimeVersion"]
            if gpu and not suffix:
                yield Problem.at(obj, (*here, "runtimeVersion"),
                                 f"{key} runtimeVersion is not GPU enabled but GPU resources are requested")
            elif suffix and not gpu:
                yield Problem.at(obj, (*here, "runtimeVersion"),
                                 f"{key} runtimeVersion is GPU enabled but GPU resources are not requested")
        storage = impl.get("storage")
        if isinstance(storage, dict) and key in STORAGE_SPEC_FORMATS:
            yield from _storage_spec(obj, storage, uri, here)
    if component == "explainer" and isinstance(section.get("art"), dict):
        art = section["art"]
        if isinstance(art.get("storage"), dict):
            uri = art.get("storageUri") if isinstance(art.get("storageUri"), str) else None
            yield from _storage_spec(obj, art["storage"], uri, (*path, "art"))
    if component == "predictor" and not _implementation_keys(component, section):
        containers = _containers(section)
        if containers:
            for index, variable in enumerate(_list(containers[0].get("env"))):
                variable = _dict(variable)
                if variable.get("name") == "PROTOCOL" and variable.get("value") not in ("v1", "v2"):
                    yield Problem.at(obj, (*path, "containers", 0, "env", index, "value"),
                                     f"invalid protocol {variable.get('value')}. Must be one of [v1, v2]")


def _storage_spec(
    obj: ManifestObject, storage: dict[str, Any], uri: str | None, path: FieldPath
) -> Iterator[Problem]:
    if uri is not None:
        if not uri.startswith(STORAGE_SPEC_PREFIXES):
            yield Problem.at(obj, (*path, "storageUri"),
                             f"with a storage spec, storageUri must be one of [{', '.join(STORAGE_SPEC_PREFIXES)}];"
                             f" {uri!r} is not supported")
        return
    kind = _dict(storage.get("parameters")).get("type")
    if isinstance(kind, str) and not f"{kind}://".startswith(STORAGE_SPEC_PREFIXES):
        yield Problem.at(obj, (*path, "storage", "parameters", "type"),
                         f"storage.spec.type must be one of [{', '.join(STORAGE_SPEC_PREFIXES)}];"
                         f" {kind!r} is not supported")


def _extensions(obj: ManifestObject, section: dict[str, Any], path: FieldPath) -> Iterator[Problem]:
    concurrency = section.get("containerConcurrency")
    if isinstance(concurrency, int) and concurrency < 0:
        yield Problem.at(obj, (*path, "containerConcurrency"), "parallelism cannot be less than 0")
    logger = section.get("logger")
    if isinstance(logger, dict) and isinstance(logger.get("storage"), dict):
        storage = logger["storage"]
        missing = [k for k in ("path", "parameters", "key") if storage.get(k) is None]
        if missing:
            yield Problem.at(obj, (*path, "logger", "storage"),
                             f"invalid logger storage configuration: {', '.join(missing)} must be set")


def _autoscaling(
    obj: ManifestObject, section: dict[str, Any], path: FieldPath, annotations: dict[str, str]
) -> Iterator[Problem]:
    mode = annotations.get(DEPLOYMENT_MODE, "")
    autoscaler = annotations.get(AUTOSCALER_CLASS, "")
    if mode in STANDARD_MODES:
        if autoscaler == "hpa":
            yield from _hpa(obj, section, path)
        elif autoscaler == "keda":
            yield from _keda(obj, section, path)
    elif annotations.get(KNATIVE_CLASS) == KNATIVE_HPA:
        yield from _hpa(obj, section, path)
    else:
        yield from _kpa(obj, section, path)


def _hpa(obj: ManifestObject, section: dict[str, Any], path: FieldPath) -> Iterator[Problem]:
    metric = section.get("scaleMetric", "cpu")
    if metric not in ("cpu", "memory"):
        yield Problem.at(obj, (*path, "scaleMetric"),
                         f"[{metric}] is not a supported metric for the HPA autoscaler (cpu, memory)")
    target = section.get("scaleTarget")
    if isinstance(target, int):
        # KServe's check reads `metric == cpu && target < 1 || target > 100`: over 100 is
        # refused for every metric.
        if (metric == "cpu" and target < 1) or target > 100:
            yield Problem.at(obj, (*path, "scaleTarget"),
                             "the target utilization percentage should be a [1-100] integer")
        elif metric == "memory" and target < 1:
            yield Problem.at(obj, (*path, "scaleTarget"), "the target memory should be greater than 1 MiB")
    for index, spec in enumerate(_list(_dict(section.get("autoScaling")).get("metrics"))):
        spec = _dict(spec)
        here: FieldPath = (*path, "autoScaling", "metrics", index)
        if spec.get("type") != "Resource":
            yield Problem.at(obj, (*here, "type"),
                             f"invalid HPA metric source type [{spec.get('type')}]; valid: Resource")
        elif not isinstance(spec.get("resource"), dict):
            yield Problem.at(obj, (*here, "resource"),
                             "metricSpec.Resource is not set for resource metric source type")


def _target_problem(target: dict[str, Any]) -> str | None:
    kind = target.get("type")
    if kind == "Utilization":
        value = target.get("averageUtilization")
        if value is None:
            return "the AverageUtilization type should be set"
        if isinstance(value, int) and not 1 <= value <= 100:
            return "the target utilization percentage should be a [1-100] integer"
    elif kind == "AverageValue" and target.get("averageValue") is None:
        return "the AverageValue type should be set"
    elif kind == "Value" and target.get("value") is None:
        return "the Value type should be set"
    return None


_QUANTITY = re.compile(r"^([0-9.]+)([KMGTPE]i?|[munk]|e[0-9]+)?$")
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
          "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
          "m": 1e-3, "u": 1e-6, "n": 1e-9}


def _bytes(quantity: Any) -> float | None:
    match = _QUANTITY.match(str(quantity))
    if not match:
        return None
    unit = match.group(2) or ""
    scale = 10 ** int(unit[1:]) if unit.startswith("e") else _UNITS.get(unit, 1)
    return float(match.group(1)) * scale


def _keda(obj: ManifestObject, section: dict[str, Any], path: FieldPath) -> Iterator[Problem]:
    if section.get("scaleMetric") is not None:
        yield Problem.at(obj, (*path, "scaleMetric"), "ScaleMetric is not supported for KEDA")
    for index, spec in enumerate(_list(_dict(section.get("autoScaling")).get("metrics"))):
        spec = _dict(spec)
        here: FieldPath = (*path, "autoScaling", "metrics", index)
        kind = spec.get("type")
        if kind == "Resource":
            resource = spec.get("resource")
            if not isinstance(resource, dict):
                yield Problem.at(obj, (*here, "resource"),
                                 "metricSpec.Resource is not set for resource metric source type")
                continue
            target = _dict(resource.get("target"))
            name = resource.get("name")
            if name == "cpu" and target.get("type") != "Utilization":
                yield Problem.at(obj, (*here, "resource", "target", "type"),
                                 "the cpu target value type should be Utilization")
            elif name == "memory":
                if target.get("type") not in ("AverageValue", "Utilization"):
                    yield Problem.at(obj, (*here, "resource", "target", "type"),
                                     "the memory target value type should be AverageValue or Utilization")
                elif target.get("type") == "AverageValue":
                    size = _bytes(target.get("averageValue"))
                    if size is not None and size < 2**20:
                        yield Problem.at(obj, (*here, "resource", "target", "averageValue"),
                                         "the memory target value should be greater than 1 MiB")
            elif name not in ("cpu", "memory"):
                yield Problem.at(obj, (*here, "resource", "name"), f"resource type {name} is not supported")
            if (problem := _target_problem(target)) is not None:
                yield Problem.at(obj, (*here, "resource", "target"), problem)
        elif kind in ("External", "PodMetric"):
            key = "external" if kind == "External" else "podmetric"
            source = spec.get(key)
            if not isinstance(source, dict):
                yield Problem.at(obj, (*here, key), f"metricSpec.{kind} is not set for {kind} metric source type")
                continue
            target = _dict(source.get("target"))
            if not _dict(source.get("metric")).get("query"):
                yield Problem.at(obj, (*here, key, "metric", "query"), "the query should not be empty")
            if target.get("value") is None:
                yield Problem.at(obj, (*here, key, "target", "value"),
                                 "the target threshold value should not be empty")
            elif (problem := _target_problem(target)) is not None:
                yield Problem.at(obj, (*here, key, "target"), problem)
        else:
            yield Problem.at(obj, (*here, "type"),
                             f"unknown KEDA metric type [{kind}]; valid: Resource, External, PodMetric")


def _kpa(obj: ManifestObject, section: dict[str, Any], path: FieldPath) -> Iterator[Problem]:
    if section.get("deploymentStrategy") is not None:
        yield Problem.at(obj, (*path, "deploymentStrategy"),
                         "customizing deploymentStrategy is only supported for raw deployment"
                         f" mode ({DEPLOYMENT_MODE}: Standard)")
    metric = section.get("scaleMetric", "concurrency")
    if metric not in ("concurrency", "rps"):
        yield Problem.at(obj, (*path, "scaleMetric"),
                         f"[{metric}] is not a supported metric for the Knative autoscaler"
                         " (concurrency, rps); cpu and memory need the HPA")
    target = section.get("scaleTarget")
    if metric == "rps" and isinstance(target, int) and target < 1:
        yield Problem.at(obj, (*path, "scaleTarget"), "the target for rps should be greater than 1")


def _confidential(obj: ManifestObject, predictor: dict[str, Any]) -> Iterator[Problem]:
    for key in MODEL_FORMATS:
        impl = predictor.get(key)
        if isinstance(impl, dict):
            confidential = _dict(impl.get("confidential"))
            if confidential.get("enabled") is True and not impl.get("storageUri"):
                yield Problem.at(obj, ("spec", "predictor", key, "storageUri"),
                                 "confidential model serving requires storageUri to be set")
            return


# --- InferenceGraph -----------------------------------------------------------------------


def _inference_graph(obj: ManifestObject, spec: dict[str, Any]) -> Iterator[Problem]:
    nodes = _dict(spec.get("nodes"))
    if "root" not in nodes:
        yield Problem.at(obj, ("spec", "nodes"),
                         "root node not found: an InferenceGraph needs a node named 'root'")
    for name, node in nodes.items():
        node = _dict(node)
        path: FieldPath = ("spec", "nodes", name)
        steps = [_dict(s) for s in _list(node.get("steps"))]
        seen: set[str] = set()
        for index, step in enumerate(steps):
            step_name = step.get("name")
            if step_name:
                if step_name in seen:
                    yield Problem.at(obj, (*path, "steps", index, "name"),
                                     f"node {name!r} has more than one step named {step_name!r}")
                seen.add(step_name)
            targets = [k for k in ("nodeName", "serviceName", "serviceUrl") if step.get(k)]
            if not targets:
                yield Problem.at(obj, (*path, "steps", index),
                                 f"step {index} of node {name!r} names no inference target"
                                 " (one of nodeName, serviceName, serviceUrl)")
            elif len(targets) > 1:
                yield Problem.at(obj, (*path, "steps", index),
                                 f"step {index} of node {name!r} names more than one of nodeName,"
                                 f" serviceName, serviceUrl ({', '.join(targets)})")
        if node.get("routerType") == "Splitter":
            missing = [i for i, s in enumerate(steps) if s.get("weight") is None]
            for index in missing:
                yield Problem.at(obj, (*path, "steps", index, "weight"),
                                 f"splitter node {name!r}: step {index} is missing its weight")
            total = sum(int(s["weight"]) for s in steps if isinstance(s.get("weight"), int))
            if not missing and total != 100:
                yield Problem.at(obj, (*path, "steps"),
                                 f"splitter node {name!r}: the weights sum to {total}, not 100")


# --- ServingRuntime / ClusterServingRuntime -----------------------------------------------


def _auto_formats(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in (_dict(x) for x in _list(spec.get("supportedModelFormats")))
            if f.get("autoSelect") is True]


def _serving_runtime(obj: ManifestObject, spec: dict[str, Any]) -> Iterator[Problem]:
    if spec.get("disabled") is True:
        return
    priorities: dict[str, Any] = {}
    for fmt in _auto_formats(spec):
        name = fmt.get("name")
        if name in priorities:
            if priorities[name] is not None and fmt.get("priority") is not None and priorities[name] != fmt["priority"]:
                yield Problem.at(obj, ("spec", "supportedModelFormats"),
                                 f"different priorities assigned for the model format {name}")
        else:
            priorities[str(name)] = fmt.get("priority")
    annotations = {str(k): str(v) for k, v in _dict(spec.get("annotations")).items()}
    worker = spec.get("workerSpec")
    if isinstance(worker, dict):
        path: FieldPath = ("spec", "workerSpec")
        if len(_containers(worker)) > 1:
            yield Problem.at(obj, (*path, "containers"),
                             "setting multiple containers in workerSpec is not allowed")
        for index, container in enumerate(_containers(spec)):
            if container.get("name") == "kserve-container":
                for env_index, name in enumerate(_env_names(container)):
                    if name in PARALLEL_ENV:
                        yield Problem.at(obj, ("spec", "containers", index, "env", env_index, "name"),
                                         f"setting {name} in environment variables is not allowed")
                yield from _gpu_problem(obj, container.get("resources"), annotations,
                                        ("spec", "containers", index, "resources"))
        workers = _containers(worker)
        if workers and workers[0].get("name") == "worker-container":
            yield from _gpu_problem(obj, workers[0].get("resources"), annotations,
                                    (*path, "containers", 0, "resources"))
        yield from _parallel_sizes(obj, worker, path)
    for key, section in (("containers", spec), ("containers", _dict(worker))):
        prefix: FieldPath = ("spec",) if section is spec else ("spec", "workerSpec")
        for index, container in enumerate(_containers(section, key)):
            for env_index, name in enumerate(_env_names(container)):
                if name in BLOCKED_ENV:
                    yield Problem.at(obj, (*prefix, key, index, "env", env_index, "name"),
                                     f"setting {name} in container {container.get('name', '')!r}"
                                     " is not allowed for security reasons")


def check_runtime_priorities(objects: Iterable[ManifestObject]) -> Iterator[Problem]:
    """Two enabled runtimes in one namespace (or two cluster runtimes) that would both be
    auto-selected for a model format at the same priority: KServe refuses the second."""
    groups: dict[tuple[str, str, str | None], list[ManifestObject]] = {}
    for obj in objects:
        if obj.kind in ("ServingRuntime", "ClusterServingRuntime") and isinstance(obj.body.get("spec"), dict):
            namespace = _dict(obj.body.get("metadata")).get("namespace")
            groups.setdefault((obj.source, obj.kind, namespace), []).append(obj)
    for members in groups.values():
        for index, new in enumerate(members):
            for old in members[:index]:
                problem = _priority_clash(new.body["spec"], old.body["spec"])
                if problem and new.name != old.name:
                    yield Problem.at(new, ("spec", "supportedModelFormats"),
                                     f"{problem} in the {new.kind}s {old.name} and {new.name}")


def _priority_clash(new: dict[str, Any], old: dict[str, Any]) -> str | None:
    if bool(new.get("multiModel")) != bool(old.get("multiModel")) or old.get("disabled") is True:
        return None
    if new.get("disabled") is True:
        return None
    if not set(map(str, _list(old.get("protocolVersions")))) & set(map(str, _list(new.get("protocolVersions")))):
        return None
    for a in _auto_formats(old):
        for b in _auto_formats(new):
            same = str(a.get("name", "")).lower() == str(b.get("name", "")).lower() and a.get("version") == b.get("version")
            if same and a.get("priority") is not None and a.get("priority") == b.get("priority"):
                return f"same priority assigned for the model format {b.get('name')}"
    return None


# --- TrainedModel -------------------------------------------------------------------------


def _trained_model(obj: ManifestObject, spec: dict[str, Any]) -> Iterator[Problem]:
    if obj.name and not TRAINED_MODEL_NAME.match(obj.name):
        yield Problem.at(obj, ("metadata", "name"),
                         f"TrainedModel name {obj.name!r} must consist of alphanumeric characters, '_' or '-'")
    uri = _dict(spec.get("model")).get("storageUri")
    if isinstance(uri, str) and not uri.startswith(TRAINED_MODEL_PREFIXES):
        yield Problem.at(obj, ("spec", "model", "storageUri"),
                         f"TrainedModel storageUri must start with one of {', '.join(TRAINED_MODEL_PREFIXES)}"
                         f" (got {uri!r})")
