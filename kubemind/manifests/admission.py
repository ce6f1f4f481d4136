"""KServe's validating-webhook rules that the CRD schemas do not express.

Mirrors `pkg/apis/serving/v1beta1/inference_service_validation.go` (and the InferenceGraph and
LocalModelCache webhooks) for the rules a user trips over: name format, exactly one predictor
implementation, replica bounds, canary percentage, storage URI schemes, logger sinks. The
remaining rules of KServe's InferenceService, InferenceGraph, ServingRuntime and TrainedModel
webhooks are in `kserve_webhooks.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from kubemind.manifests.kserve_webhooks import check_webhooks
from kubemind.manifests.problems import FieldPath, ManifestObject, Problem
from kubemind.manifests.storage_uris import storage_uri_problem

KSERVE_GROUPS = ("serving.kserve.io", "serving.kubeflow.org")

# KServe's IsvcNameFmt / GraphNameFmt: a DNS-1035 label, because the name becomes a Knative
# Service, a hostname and an environment-variable prefix.
NAME_FORMAT = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME_LENGTH = 63

# The model-format keys of a PredictorSpec; a custom container is the remaining implementation.
PREDICTOR_IMPLEMENTATIONS = (
    "sklearn",
    "xgboost",
    "tensorflow",
    "pytorch",
    "triton",
    "onnx",
    "huggingface",
    "pmml",
    "lightgbm",
    "paddle",
    "model",
)
# KServe treats the container with this name as the predictor; others are sidecars (for
# example a collocated transformer-container).
PREDICTOR_CONTAINER_NAME = "kserve-container"
COMPONENTS = ("predictor", "transformer", "explainer")


def check_admission(obj: ManifestObject) -> Iterator[Problem]:
    """Yield the webhook rejections for a KServe object (nothing for other kinds)."""
    if obj.group not in KSERVE_GROUPS:
        return
    if obj.kind in ("InferenceService", "InferenceGraph"):
        yield from _check_name(obj)
    spec = obj.body.get("spec")
    if not isinstance(spec, dict):
        return
    yield from check_webhooks(obj, spec)
    if obj.kind == "InferenceService":
        yield from _check_inference_service(obj, spec)
    elif obj.kind == "InferenceGraph":
        yield from _check_replicas(obj, spec, ("spec",))
    elif obj.kind in ("LocalModelCache", "ClusterLocalModelCache") and isinstance(
        spec.get("sourceModelUri"), str
    ):
        problem = storage_uri_problem(spec["sourceModelUri"])
        if problem:
            yield Problem.at(obj, ("spec", "sourceModelUri"), problem)


def _check_name(obj: ManifestObject) -> Iterator[Problem]:
    name = obj.name
    if name and (not NAME_FORMAT.match(name) or len(name) > MAX_NAME_LENGTH):
        yield Problem.at(
            obj,
            ("metadata", "name"),
            f"{obj.kind} name {name!r} must be at most {MAX_NAME_LENGTH} lower-case letters, digits "
            "or '-', start with a letter and end with a letter or digit",
        )


def _check_inference_service(obj: ManifestObject, spec: dict[str, Any]) -> Iterator[Problem]:
    predictor = spec.get("predictor")
    if isinstance(predictor, dict):
        yield from _check_one_implementation(obj, predictor)
    for component in COMPONENTS:
        section = spec.get(component)
        if not isinstance(section, dict):
            continue
        path: FieldPath = ("spec", component)
        yield from _check_replicas(obj, section, path)
        canary = section.get("canaryTrafficPercent")
        if isinstance(canary, int) and not 0 <= canary <= 100:
            yield Problem.at(
                obj,
                (*path, "canaryTrafficPercent"),
                f"{canary} is not a percentage between 0 and 100",
            )
        yield from _check_logger(obj, section.get("logger"), (*path, "logger"))
        for uri_path, uri in _storage_uris(section, path):
            problem = storage_uri_problem(uri)
            if problem:
                yield Problem.at(obj, uri_path, problem)


def _check_one_implementation(obj: ManifestObject, predictor: dict[str, Any]) -> Iterator[Problem]:
    found = [key for key in PREDICTOR_IMPLEMENTATIONS if isinstance(predictor.get(key), dict)]
    containers = [c for c in predictor.get("containers") or [] if isinstance(c, dict)]
    names = [c.get("name") for c in containers]
    # The defaulting webhook names a lone custom container kserve-container; any other
    # containers next to a model format are sidecars.
    if PREDICTOR_CONTAINER_NAME in names or (containers and not found):
        found.append("containers")
    if len(found) != 1:
        options = ", ".join(
            (*PREDICTOR_IMPLEMENTATIONS, f"containers[name={PREDICTOR_CONTAINER_NAME}]")
        )
        detail = f"found {', '.join(found)}" if found else "found none"
        yield Problem.at(
            obj,
            ("spec", "predictor"),
            f"exactly one predictor implementation is required ({detail}); one of: {options}",
        )


def _check_replicas(
    obj: ManifestObject, section: dict[str, Any], path: FieldPath
) -> Iterator[Problem]:
    low, high = section.get("minReplicas"), section.get("maxReplicas")
    if isinstance(low, int) and low < 0:
        yield Problem.at(obj, (*path, "minReplicas"), f"minReplicas {low} cannot be negative")
    if isinstance(high, int) and high < 0:
        yield Problem.at(obj, (*path, "maxReplicas"), f"maxReplicas {high} cannot be negative")
    # maxReplicas 0 means "no upper bound" to KServe.
    if isinstance(low, int) and isinstance(high, int) and high > 0 and low > high:
        yield Problem.at(
            obj, (*path, "minReplicas"), f"minReplicas {low} is greater than maxReplicas {high}"
        )


def _check_logger(obj: ManifestObject, logger: Any, path: FieldPath) -> Iterator[Problem]:
    # The mode enum (all, request, response) is in the CRD schema; the sink URL is not checked there.
    if not isinstance(logger, dict):
        return
    url = logger.get("url")
    if isinstance(url, str) and not re.match(r"^https?://[^/\s]+", url):
        yield Problem.at(obj, (*path, "url"), f"logger url {url!r} must be an absolute http(s) URL")


def _storage_uris(section: dict[str, Any], path: FieldPath) -> Iterator[tuple[FieldPath, str]]:
    """Every storageUri in a component: model formats, the component itself, STORAGE_URI env."""
    for key, value in section.items():
        if key == "storageUri" and isinstance(value, str):
            yield (*path, key), value
        elif key in PREDICTOR_IMPLEMENTATIONS and isinstance(value, dict):
            yield from _storage_uris(value, (*path, key))
        elif key == "storageUris" and isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict) and isinstance(item.get("uri"), str):
                    yield (*path, key, index, "uri"), item["uri"]
        elif key == "containers" and isinstance(value, list):
            for index, container in enumerate(value):
                env = container.get("env") if isinstance(container, dict) else None
                for env_index, variable in enumerate(env or []):
                    if (
                        isinstance(variable, dict)
                        and variable.get("name") == "STORAGE_URI"
                        and isinstance(variable.get("value"), str)
                    ):
                        yield (*path, key, index, "env", env_index, "value"), variable["value"]
