"""The contract between manifests and code: every kubemind container's args parse with its
component's settings class, so a typo in an overlay fails here rather than in a crash-looping pod.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
from collections.abc import Iterator
from typing import Any

from pydantic_settings import BaseSettings

from kubemind.errors import InvalidSettings
from kubemind.manifests.problems import FieldPath, ManifestObject, Problem
from kubemind.settings import ComponentSettings, parse_flags, parse_settings

# The one map from a kubemind image (repository path, any registry and tag) to the settings
# class its entry point parses. Overlays retag and re-home images with `images:`; the last two
# path segments stay.
COMPONENT_SETTINGS: dict[str, str] = {
    "kubemind/predictor-onnx": "kubemind_predictors.onnx.settings:OnnxSettings",
    "kubemind/predictor-simple": "kubemind_predictors.simple.settings:SimpleSettings",
    "kubemind/predictor-triton": "kubemind_predictors.triton.settings:TritonPredictorSettings",
    "kubemind/predictor-vllm": "kubemind_predictors.vllm.settings:VLLMSettings",
    "kubemind/transformer-image": "kubemind_transformers.image.settings:ImageTransformerSettings",
    "kubemind/transformer-rag": "kubemind_transformers.rag.settings:RagSettings",
    "kubemind/worker-cv": "kubemind_workers.settings:CVWorkerSettings",
    "kubemind/drift-service": "kubemind.drift.service:DriftSettings",
}

# kubemind images hold every component's code; a container whose command runs another
# component's entry point (`python -m MODULE`) parses that component's settings.
MODULE_SETTINGS: dict[str, str] = {
    "kubemind_transformers.router": "kubemind_transformers.router.settings:RouterSettings",
    # the job writer: the Triton predictor with the jobs routes (the worker is kubemind_workers.worker)
    "kubemind_workers": "kubemind_workers.settings:JobWriterSettings",
    "kubemind_workers.worker": "kubemind_workers.settings:CVWorkerSettings",
    # the release controller's Deployment (not a server: no KServe flags)
    "kubemind.release": "kubemind.release.settings:ReleaseSettings",
}

# KServe fills these templates in ServingRuntime args at deploy time.
_RUNTIME_TEMPLATE = re.compile(r"\{\{\s*\.Name\s*\}\}")
# Kubernetes expands $(VAR) from the container env before the process sees it.
_ENV_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")

_POD_TEMPLATE_CONTAINERS: tuple[FieldPath, ...] = (("spec", "template", "spec", "containers"),)
# Where each kind keeps the containers whose args we check.
CONTAINER_LISTS: dict[str, tuple[FieldPath, ...]] = {
    "InferenceService": tuple(
        ("spec", c, "containers") for c in ("predictor", "transformer", "explainer")
    ),
    "ServingRuntime": (("spec", "containers"),),
    "ClusterServingRuntime": (("spec", "containers"),),
    "Pod": (("spec", "containers"),),
    "Deployment": _POD_TEMPLATE_CONTAINERS,
    "StatefulSet": _POD_TEMPLATE_CONTAINERS,
    "DaemonSet": _POD_TEMPLATE_CONTAINERS,
    "Service": _POD_TEMPLATE_CONTAINERS,  # Knative Service; a core Service has no template
}


def image_repository(image: str) -> str:
    """`reg.io:5000/kubemind/predictor-vllm:1.2@sha256:..` -> `kubemind/predictor-vllm`."""
    without_digest = image.split("@", 1)[0]
    last_slash = without_digest.rfind("/")
    if ":" in without_digest[last_slash + 1 :]:
        without_digest = without_digest[: without_digest.rfind(":")]
    return "/".join(without_digest.split("/")[-2:])


# Images whose ENTRYPOINT is a bare `python -m`: the first arg names the module (the image's
# CMD, the `simple` predictor, when there are no args).
GENERIC_IMAGES: dict[str, str] = {"kubemind/core": "kubemind_predictors.simple",
                                  "kubemind/rollout-controller": "kubemind.release"}


def settings_class_for(image: str) -> str | None:
    """The `module:Class` path of the settings a kubemind image parses, None for other images."""
    return COMPONENT_SETTINGS.get(image_repository(image))


def entry_point(
    image: str, args: list[str], command: list[str] | None = None
) -> tuple[str, str | None, list[str]] | None:
    """(module, its settings `module:Class` if known, the module's own args) of a kubemind
    image's container, None for an image that is not kubemind's. A container whose command runs
    another component's entry point (`python -m MODULE`) runs that module."""
    repository = image_repository(image)
    if repository not in GENERIC_IMAGES and repository not in COMPONENT_SETTINGS:
        return None
    words = [str(word) for word in command or []]
    if "-m" in words[:-1]:
        module = words[words.index("-m") + 1]
        return module, _settings_of_module(module), args
    if repository in GENERIC_IMAGES:
        module = args[0] if args and not args[0].startswith("-") else GENERIC_IMAGES[repository]
        rest = args[1:] if args and not args[0].startswith("-") else args
        return module, _settings_of_module(module), rest
    dotted = COMPONENT_SETTINGS[repository]
    return _settings_module(dotted), dotted, args


def _settings_of_module(module: str) -> str | None:
    return MODULE_SETTINGS.get(module) or next(
        (d for d in COMPONENT_SETTINGS.values() if _settings_module(d) == module), None
    )


def _settings_module(dotted: str) -> str:
    """`kubemind_predictors.simple.settings:SimpleSettings` -> `kubemind_predictors.simple`."""
    return dotted.partition(":")[0].removesuffix(".settings")


def _import_settings(dotted: str) -> type[BaseSettings]:
    module_name, _, class_name = dotted.partition(":")
    settings_cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(settings_cls, type) and issubclass(settings_cls, BaseSettings)):
        raise TypeError(f"{dotted} is not a settings class")
    return settings_cls


@contextlib.contextmanager
def _container_environment(env: dict[str, str]) -> Iterator[None]:
    """The container's env instead of ours while its settings parse (pydantic-settings reads
    os.environ); our own KUBEMIND_* variables must not hide the container's mistakes."""
    saved = dict(os.environ)
    try:
        for name in [name for name in os.environ if name.startswith("KUBEMIND_")]:
            del os.environ[name]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def args_problem(dotted: str, args: list[str], env: dict[str, str]) -> str | None:
    """Why `args` (and the env) do not parse with the settings class, or None when they do."""
    try:
        settings_cls = _import_settings(dotted)
    except (ImportError, AttributeError, TypeError) as exc:
        return f"settings class {dotted} cannot be imported: {exc}"
    stderr = io.StringIO()
    try:
        with _container_environment(env), contextlib.redirect_stderr(stderr):
            if issubclass(settings_cls, ComponentSettings):  # a server: KServe's flags too
                parse_settings(settings_cls, args, prog=settings_cls.__name__)
            else:
                parse_flags(settings_cls, args, prog=settings_cls.__name__)
    except InvalidSettings as exc:
        return str(exc)
    except SystemExit:
        # argparse reports unknown flags and bad syntax by exiting; its last line says why.
        lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
        return (
            f"{settings_cls.__name__} rejects the args: {lines[-1] if lines else 'argparse error'}"
        )
    return None


def check_component_args(
    obj: ManifestObject, runtimes: dict[str, dict[str, Any]]
) -> Iterator[Problem]:
    """Yield a Problem for each kubemind container whose args its settings class rejects.

    `runtimes` maps (Cluster)ServingRuntime names rendered alongside to their bodies, so that an
    InferenceService's `predictor.model.args` are checked appended to its runtime's args, which
    is how KServe assembles the container.
    """
    for containers_path in CONTAINER_LISTS.get(obj.kind, ()):
        containers = _get(obj.body, containers_path)
        for index, container in enumerate(containers if isinstance(containers, list) else []):
            if isinstance(container, dict):
                yield from _check_container(obj, container, (*containers_path, index))
    if obj.kind == "InferenceService":
        model = _get(obj.body, ("spec", "predictor", "model"))
        if isinstance(model, dict):
            yield from _check_model_on_runtime(obj, model, runtimes)


def _check_model_on_runtime(
    obj: ManifestObject, model: dict[str, Any], runtimes: dict[str, dict[str, Any]]
) -> Iterator[Problem]:
    runtime = runtimes.get(str(model.get("runtime", "")))
    if runtime is None:
        return  # chosen by the cluster from supported model formats: only a cluster knows which
    merged = model_container(model, runtime)
    if merged is not None:
        yield from _check_container(obj, merged, ("spec", "predictor", "model"))


def model_container(model: dict[str, Any], runtime: dict[str, Any]) -> dict[str, Any] | None:
    """The container KServe assembles for `predictor.model` on `runtime`: the runtime's
    kserve-container with the model's args and env appended and its image and command, if any,
    instead."""
    for container in _get(runtime, ("spec", "containers")) or []:
        if container.get("name") != "kserve-container":
            continue
        merged = dict(container)
        merged["args"] = [*(container.get("args") or []), *(model.get("args") or [])]
        merged["env"] = [*(container.get("env") or []), *(model.get("env") or [])]
        for replaced in ("image", "command"):
            if model.get(replaced):
                merged[replaced] = model[replaced]
        return merged
    return None


def _check_container(
    obj: ManifestObject, container: dict[str, Any], path: FieldPath
) -> Iterator[Problem]:
    env = {
        str(item["name"]): str(item["value"])
        for item in container.get("env") or []
        if isinstance(item, dict) and "name" in item and isinstance(item.get("value"), str)
    }
    args = [expand_arg(str(arg), obj.name, env) for arg in container.get("args") or []]
    command = container.get("command")
    entry = entry_point(str(container.get("image", "")), args, command if isinstance(command, list) else None)
    dotted = entry[1] if entry else None
    if entry is None or dotted is None:
        return
    problem = args_problem(dotted, entry[2], env)
    if problem:
        yield Problem.at(obj, (*path, "args"), problem)


def expand_arg(arg: str, name: str, env: dict[str, str]) -> str:
    """An arg as the container sees it: KServe's {{.Name}} filled in, $(VAR) expanded from env."""
    arg = _RUNTIME_TEMPLATE.sub(name or "model", arg)
    return _ENV_REFERENCE.sub(lambda match: env.get(match.group(1), match.group(0)), arg)


def _get(value: Any, path: FieldPath) -> Any:
    for part in path:
        if isinstance(value, dict) and isinstance(part, str):
            value = value.get(part)
        else:
            return None
    return value
