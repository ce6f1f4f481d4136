"""From a kustomize overlay to what runs locally: one ComponentPlan per InferenceService component.

The objects are the ones `kubectl apply -k` would send (principle 16: no second list of
services), and they pass the same checks as `kubemind validate` first: a spec the cluster would
reject never starts here either.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubemind.errors import InvalidInput
from kubemind.manifests.component_args import (
    entry_point,
    expand_arg,
    image_repository,
    model_container,
)
from kubemind.manifests.crd_catalog import default_crd_dir
from kubemind.manifests.problems import ManifestObject, Problem
from kubemind.manifests.references import Allowed
from kubemind.manifests.validator import RUNTIME_KINDS, check_objects, load_objects
from kubemind.runtimes import RUNTIMES, Runtime

COMPONENTS = ("predictor", "transformer")
# Where the storage initializer puts the model in the pod; replaced by the local folder.
POD_MODEL_DIR = "/mnt/models"
# Flags the local runner sets itself: every replica binds 127.0.0.1 on ports chosen at run
# time, whatever port the container listens on in its pod.
LOCAL_FLAGS = ("--host", "--http_port", "--grpc_port")
# Fields that change how traffic is split, not what runs: KServe keeps the revision.
NOT_IN_REVISION = ("canaryTrafficPercent",)
# Folders kubemind's images are built with (images/), relative to the checkout they come from:
# locally a container's path under one of them is the checkout's folder.
IMAGE_FOLDERS = {"/opt/kubemind/features": "features"}
# Components that take a table of where each service is (for a run outside a cluster): `up`
# passes every service it runs, at its cluster port (cluster_ports.py).
SERVICE_TABLE_FLAGS = {"kubemind_transformers.router": "--service_hosts"}


@dataclass(frozen=True)
class NativeServer:
    """A server in an image that is not kubemind's which this machine runs natively: `module`
    takes the local runner's flags plus the container's args and execs the real program."""

    module: str
    program: str
    """The container's first word (command, else args): the program, not one of its args."""
    listener_flags: tuple[str, ...]
    """The pod's ports and addresses: dropped, `module` binds the ports the runner chose."""


# Images that are not kubemind's (repository path, any registry and tag) this machine runs.
NATIVE_SERVERS: dict[str, NativeServer] = {
    "nvidia/tritonserver": NativeServer(
        "kubemind_predictors.triton.stock_server",
        "tritonserver",
        ("--http-port", "--grpc-port", "--metrics-port", "--http-address", "--grpc-address", "--metrics-address"),
    ),
}


class NotRunnableLocally(InvalidInput):
    """A component this machine cannot run (an image with no kubemind module and no native
    server here, a storage scheme the local runner does not read)."""


class SpecsRejected(InvalidInput):
    """The overlay does not render, or `kubemind validate` rejects what it renders."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()):
        # Message first, like every KubemindError, so the transports can raise any of them alike.
        super().__init__(message)
        self.problems = list(problems)

    @classmethod
    def of(cls, problems: Sequence[Problem]) -> SpecsRejected:
        return cls("; ".join(p.message for p in problems), problems)


@dataclass(frozen=True)
class ComponentPlan:
    """One revision of one component of an InferenceService, as processes on this machine."""

    service: str
    namespace: str
    component: str
    revision: str
    """`{service}-{component}-{hash}`: a hash of the component spec, so an edit makes a new one."""
    module: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    storage_uri: str | None = None
    min_replicas: int = 1
    canary_percent: int | None = None
    ready_timeout: float = 120.0
    predictor_protocol: str | None = None
    """For a transformer: how it calls the predictor (grpc-v2 or v2), so --predictor_host gets
    the predictor's local gRPC or REST address."""
    config_volumes: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    """(mountPath, ((file name, content), ...)) of each ConfigMap the container mounts: written
    to a local folder that replaces the mount path in the args, as the kubelet projects them."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.service}/{self.component}"


@dataclass
class ServicePlan:
    name: str
    namespace: str
    components: dict[str, ComponentPlan] = field(default_factory=dict)
    problem: str | None = None
    """Why this service does not run here (the others still do)."""

    @property
    def entry(self) -> str:
        """The component the gateway sends a service's traffic to: the transformer if any."""
        return "transformer" if "transformer" in self.components else "predictor"


def find_overlay(overlay: str, start: Path | None = None) -> Path:
    """A path as given, else `inferenceservices/overlays/NAME` in the checkout around `start`."""
    as_path = Path(overlay)
    if as_path.is_dir():
        return as_path
    for folder in [(start or Path.cwd()).resolve(), *(start or Path.cwd()).resolve().parents]:
        candidate = folder / "inferenceservices" / "overlays" / overlay
        if candidate.is_dir():
            return candidate
    raise InvalidInput(f"no overlay {overlay!r}: not a folder, and no inferenceservices/overlays/{overlay}"
                       " in this checkout")


def checkout_root(overlay: Path) -> Path | None:
    """The kubemind checkout an overlay lives in (the folder holding inferenceservices/)."""
    return next((folder for folder in overlay.resolve().parents if (folder / "inferenceservices").is_dir()), None)


def checkout_allow_list(overlay: Path) -> Path | None:
    """The checkout's `external-objects.yaml` (what `make validate` passes as --allow-refs) for an
    overlay inside a checkout: `up dev` accepts the objects `make validate` accepts."""
    root = checkout_root(overlay)
    return root / "external-objects.yaml" if root and (root / "external-objects.yaml").is_file() else None


def image_folder_stand_ins(overlay: Path) -> dict[str, Path]:
    """IMAGE_FOLDERS that exist in the overlay's checkout, as local folders."""
    root = checkout_root(overlay)
    if root is None:
        return {}
    return {pod: root / local for pod, local in IMAGE_FOLDERS.items() if (root / local).is_dir()}


@dataclass(frozen=True)
class Rendered:
    """What the overlay (and any Istio paths) render now; `fingerprint` tells a change apart."""

    objects: list[ManifestObject]
    problems: list[Problem]
    fingerprint: str


def render_specs(paths: Sequence[Path]) -> Rendered:
    """Build each kustomize root (or read the YAML files) once; nothing is validated yet."""
    result = load_objects(paths)
    digest = hashlib.sha256(json.dumps([o.body for o in result.objects], sort_keys=True).encode()).hexdigest()
    return Rendered(result.objects, result.problems, digest)


def validate_specs(rendered: Rendered, allowed_refs: Iterable[Allowed] = ()) -> list[ManifestObject]:
    """The objects, once they pass `kubemind validate`'s checks; SpecsRejected carries the
    problems exactly as `kubemind validate` prints them."""
    problems = rendered.problems or check_cluster(rendered.objects, allowed_refs)
    if problems:
        raise SpecsRejected.of(problems)
    return rendered.objects


def check_cluster(objects: list[ManifestObject], allowed_refs: Iterable[Allowed] = ()) -> list[Problem]:
    """`kubemind validate`'s checks: for an overlay's render, and for the objects a write
    through `kubemind up`'s Kubernetes API would leave."""
    return check_objects(objects, default_crd_dir(), allowed_refs=allowed_refs)


def plan_services(objects: list[ManifestObject]) -> list[ServicePlan]:
    runtimes = {obj.name: obj.body for obj in objects if obj.kind in RUNTIME_KINDS}
    storage_prefixes = _storage_prefixes(objects)
    config_maps = {(str(o.body.get("metadata", {}).get("namespace") or "default"), o.name): o.body
                   for o in objects if o.kind == "ConfigMap"}
    plans = []
    for obj in objects:
        if obj.kind != "InferenceService":
            continue
        namespace = str(obj.body.get("metadata", {}).get("namespace") or "default")
        service = ServicePlan(obj.name, namespace)
        try:
            for component in COMPONENTS:
                spec = obj.body.get("spec", {}).get(component)
                if isinstance(spec, dict):
                    service.components[component] = _plan_component(
                        obj.name, namespace, component, spec, runtimes, storage_prefixes, config_maps)
        except NotRunnableLocally as exc:
            service.problem = str(exc)
            service.components.clear()
        plans.append(service)
    return plans


def revision_name(service: str, component: str, spec: dict[str, Any]) -> str:
    kept = {key: value for key, value in spec.items() if key not in NOT_IN_REVISION}
    digest = hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:8]
    return f"{service}-{component}-{digest}"


def _plan_component(
    service: str,
    namespace: str,
    component: str,
    spec: dict[str, Any],
    runtimes: dict[str, dict[str, Any]],
    storage_prefixes: tuple[str, ...],
    config_maps: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> ComponentPlan:
    model = spec.get("model")
    storage_uri = spec.get("storageUri")
    if isinstance(model, dict):
        runtime_name = str(model.get("runtime") or _runtime_for_format(model, runtimes) or "")
        runtime = runtimes.get(runtime_name)
        container = model_container(model, runtime) if runtime else None
        if container is None:
            raise NotRunnableLocally(f"{service}: {component}: no ServingRuntime {runtime_name!r} rendered with it")
        storage_uri = model.get("storageUri") or storage_uri
    else:
        containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
        container = next((c for c in containers if c.get("name") == "kserve-container"), None) or (
            containers[0] if containers else None)
        if container is None:
            raise NotRunnableLocally(f"{service}: {component}: no container")
        runtime_name = ""
    image = str(container.get("image", ""))
    env = {str(e["name"]): str(e["value"]) for e in container.get("env") or []
           if isinstance(e, dict) and isinstance(e.get("value"), str)}
    if not isinstance(model, dict):
        # KServe's custom containers (a transformer, a custom predictor) ask for the storage
        # initializer through their container's STORAGE_URI variable.
        storage_uri = env.get("STORAGE_URI") or storage_uri
    args = [expand_arg(str(arg), service, env) for arg in container.get("args") or []]
    raw_command = container.get("command")
    command = [str(word) for word in raw_command] if isinstance(raw_command, list) else None
    entry = entry_point(image, args, command)
    native = None if entry else NATIVE_SERVERS.get(image_repository(image))
    if entry:
        module: str | None = entry[0]
        args = entry[2]
    elif native:
        module = native.module
        args = _native_args(f"{service}: {component}: image {image!r}", native, command, args)
    else:
        module = _runtime_module(runtime_name)
    if module is None:
        raise NotRunnableLocally(
            f"{service}: {component}: image {image!r} is not a kubemind image; it runs on a cluster only")
    if storage_uri:
        _check_storage(service, component, str(storage_uri), storage_prefixes)
    local = next((r for r in RUNTIMES.values() if r.module == module), None)
    return ComponentPlan(
        service=service,
        namespace=namespace,
        component=component,
        revision=revision_name(service, component, spec),
        module=module,
        # The runtime's flags for this machine first, so that the spec's own args win.
        args=(*(local.local_args if local else ()),
              *_without_flags(args, native.listener_flags if native else LOCAL_FLAGS)),
        env=(*env.items(), *(local.env if local else ())),
        storage_uri=str(storage_uri) if storage_uri else None,
        min_replicas=int(spec.get("minReplicas", 1)),
        canary_percent=_percent(spec.get("canaryTrafficPercent")),
        ready_timeout=local.ready_timeout if local else Runtime.ready_timeout,
        predictor_protocol=_flag_value(args, "--predictor_protocol", "grpc-v2") if component == "transformer" else None,
        config_volumes=_config_volumes(service, component, namespace, spec, container, config_maps or {}),
    )


def _config_volumes(
    service: str,
    component: str,
    namespace: str,
    spec: dict[str, Any],
    container: dict[str, Any],
    config_maps: dict[tuple[str, str], dict[str, Any]],
) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """The ConfigMap volumes the container mounts, with the files the kubelet would project."""
    volumes = {str(v.get("name")): v for v in spec.get("volumes") or [] if isinstance(v, dict)}
    mounted = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(str(mount.get("name")))
        source = (volume or {}).get("configMap")
        if not isinstance(source, dict):
            continue  # other volume kinds: a cluster's business (an emptyDir needs no stand-in)
        name = str(source.get("name", ""))
        body = config_maps.get((namespace, name))
        if body is None:
            raise NotRunnableLocally(
                f"{service}: {component}: volume {mount.get('name')!r} mounts ConfigMap {namespace}/{name},"
                " which the overlay does not render")
        data = {str(k): str(v) for k, v in (body.get("data") or {}).items()}
        items = source.get("items")
        if isinstance(items, list):  # only the listed keys, under their paths
            data = {str(i["path"]): data[str(i["key"])] for i in items if isinstance(i, dict) and str(i.get("key")) in data}
        mounted.append((str(mount.get("mountPath")), tuple(sorted(data.items()))))
    return tuple(mounted)


def _runtime_for_format(model: dict[str, Any], runtimes: dict[str, dict[str, Any]]) -> str | None:
    """KServe's choice when no runtime is named: the highest-priority autoSelect runtime that
    lists the model's format."""
    wanted = str((model.get("modelFormat") or {}).get("name", ""))
    best: tuple[int, str] | None = None
    for name, body in runtimes.items():
        for fmt in body.get("spec", {}).get("supportedModelFormats") or []:
            if fmt.get("name") == wanted and fmt.get("autoSelect"):
                candidate = (int(fmt.get("priority", 0)), name)
                best = max(best, candidate) if best else candidate
    return best[1] if best else None


def _runtime_module(runtime_name: str) -> str | None:
    return next((r.module for r in RUNTIMES.values() if r.serving_runtime == runtime_name), None)


def _storage_prefixes(objects: list[ManifestObject]) -> tuple[str, ...]:
    prefixes = []
    for obj in objects:
        if obj.kind == "ClusterStorageContainer":
            prefixes += [str(f.get("prefix", "")) for f in obj.body.get("spec", {}).get("supportedUriFormats") or []]
    return tuple(p for p in prefixes if p)


def _check_storage(service: str, component: str, uri: str, prefixes: tuple[str, ...]) -> None:
    if uri.startswith("models:/"):
        if not any(uri.startswith(prefix) for prefix in prefixes):
            raise NotRunnableLocally(
                f"{service}: {component}: storageUri {uri}: no ClusterStorageContainer rendered with the"
                " overlay claims the models:/ prefix, so a cluster could not initialize it either")
        return
    if uri.startswith("file://") or "://" not in uri:
        return
    raise NotRunnableLocally(
        f"{service}: {component}: storageUri {uri} is not supported locally (models:/, file:// and local paths are)")


def _native_args(where: str, native: NativeServer, command: list[str] | None, args: list[str]) -> list[str]:
    """The program's args: what follows its name in the container's command and args."""
    words = [*(command or []), *args]
    if not words or Path(words[0]).name != native.program:
        raise NotRunnableLocally(
            f"{where} runs {words[0] if words else 'its entrypoint'!r}; only {native.program} runs locally")
    return words[1:]


def _without_flags(args: list[str], flags: tuple[str, ...]) -> list[str]:
    kept: list[str] = []
    skip_value = False
    for arg in args:
        if skip_value:
            skip_value = False
            continue
        flag = arg.split("=", 1)[0]
        if flag in flags:
            skip_value = "=" not in arg
            continue
        kept.append(arg)
    return kept


def _flag_value(args: list[str], flag: str, default: str) -> str:
    value = default
    for index, arg in enumerate(args):
        if arg.startswith(f"{flag}="):
            value = arg.split("=", 1)[1]
        elif arg == flag and index + 1 < len(args):
            value = args[index + 1]
    return value


def _percent(value: Any) -> int | None:
    return None if value is None else max(0, min(100, int(value)))
