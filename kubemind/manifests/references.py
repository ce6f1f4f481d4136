"""References between objects: a Service, Secret, ConfigMap or serving runtime that a rendered
object names must be defined by the same rendering, or be listed as living outside it.

The API server accepts a dangling reference; the failure comes later and far from its cause (a
KafkaSource that never becomes Ready, a pod stuck in CreateContainerConfigError, an
InferenceService with no runtime). An overlay is deployed as a whole, so each kustomize build
is checked on its own; plain YAML files name objects from elsewhere too often to be checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubemind.manifests import yaml_limits
from kubemind.manifests.problems import FieldPath, ManifestObject, Problem
from kubemind.manifests.rendering import is_build

SERVICE = "Service"
KNATIVE_SERVICE = "serving.knative.dev/Service"
SECRET = "Secret"
CONFIG_MAP = "ConfigMap"
SERVING_RUNTIME = "ServingRuntime"

# KServe 0.20's ClusterServingRuntimes (config/runtimes): installed with KServe itself.
KSERVE_CLUSTER_RUNTIMES = frozenset({
    "kserve-huggingfaceserver",
    "kserve-huggingfaceserver-multinode",
    "kserve-lgbserver",
    "kserve-mlserver",
    "kserve-paddleserver",
    "kserve-pmmlserver",
    "kserve-predictiveserver",
    "kserve-sklearnserver",
    "kserve-tensorflow-serving",
    "kserve-torchserve",
    "kserve-tritonserver",
    "kserve-xgbserver",
})
# Keys whose value names a Secret or ConfigMap by `name` (core/v1 selectors and references,
# prometheus-operator's SecretKeySelector, KEDA's secretTargetRef).
SECRET_KEYS = ("secretKeyRef", "secretRef", "secretTargetRef")
CONFIG_MAP_KEYS = ("configMapKeyRef", "configMapRef", "configMap")
# Knative eventing's Destination fields.
DESTINATION_KEYS = ("sink", "subscriber", "deadLetterSink", "reply")


@dataclass(frozen=True)
class Ref:
    """An object one manifest names: a kind ("Secret", "serving.knative.dev/Service", ...),
    its namespace (None: the referrer's, unknown) and name."""

    kind: str
    namespace: str | None
    name: str

    def label(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True)
class Allowed:
    """An allow-list entry: kind, namespace (or "*") and name (or "*")."""

    kind: str
    namespace: str
    name: str

    def matches(self, ref: Ref) -> bool:
        return (
            self.kind == ref.kind
            and self.namespace in ("*", ref.namespace or "*")
            and self.name in ("*", ref.name)
        )

    @classmethod
    def parse(cls, text: str) -> Allowed:
        """`KIND/NAMESPACE/NAME` (`*` for any namespace or name); KIND may carry a group."""
        kind, _, rest = text.rpartition("/")
        kind, _, namespace = kind.rpartition("/")
        if not kind or not namespace or not rest:
            raise ValueError(f"{text!r}: expected KIND/NAMESPACE/NAME, e.g. Secret/kubemind/db")
        return cls(kind, namespace, rest)


def load_allow_list(path: Path) -> list[Allowed]:
    """Entries of a YAML list of {kind, namespace, name, reason} mappings."""
    loaded = yaml_limits.load(path.read_text(encoding="utf-8")) or []
    if not isinstance(loaded, list):
        raise ValueError(f"{path}: expected a YAML list of {{kind, namespace, name, reason}}")
    entries = []
    for item in loaded:
        if not isinstance(item, dict) or not {"kind", "name"} <= item.keys():
            raise ValueError(f"{path}: every entry needs kind and name (got {item!r})")
        entries.append(Allowed(str(item["kind"]), str(item.get("namespace", "*")), str(item["name"])))
    return entries


def _kind_of(api_version: str, kind: str) -> str:
    group = api_version.rpartition("/")[0]
    return kind if group in ("", "v1") or not group else f"{group}/{kind}"


def _namespace(obj: ManifestObject) -> str | None:
    metadata = obj.body.get("metadata")
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    return str(namespace) if namespace else None


def defined(obj: ManifestObject) -> Iterator[Ref]:
    """What an object makes exist: itself, and the Services KServe and Knative create for it."""
    namespace, name = _namespace(obj), obj.name
    kind = _kind_of(obj.api_version, obj.kind)
    yield Ref(kind, namespace, name)
    if kind == KNATIVE_SERVICE:
        yield Ref(SERVICE, namespace, name)
    if obj.group in ("serving.kserve.io", "serving.kubeflow.org"):
        if obj.kind == "InferenceService":
            # The top-level Service and one (Knative) Service per component.
            yield Ref(SERVICE, namespace, name)
            spec = obj.body.get("spec") or {}
            for component in ("predictor", "transformer", "explainer"):
                if isinstance(spec, dict) and component in spec:
                    for service_kind in (SERVICE, KNATIVE_SERVICE):
                        yield Ref(service_kind, namespace, f"{name}-{component}")
        elif obj.kind == "InferenceGraph":
            yield Ref(SERVICE, namespace, name)
            yield Ref(KNATIVE_SERVICE, namespace, name)


def references(obj: ManifestObject) -> Iterator[tuple[FieldPath, Ref]]:
    """Every object this one names, with the field that names it."""
    namespace = _namespace(obj)
    yield from _walk(obj.body, (), namespace)
    if obj.kind == "InferenceService" and obj.group in ("serving.kserve.io", "serving.kubeflow.org"):
        predictor = (obj.body.get("spec") or {}).get("predictor")
        if isinstance(predictor, dict):
            for key, value in predictor.items():
                if isinstance(value, dict) and isinstance(value.get("runtime"), str):
                    yield ("spec", "predictor", key, "runtime"), Ref(
                        SERVING_RUNTIME, namespace, value["runtime"]
                    )


def _optional(value: dict[str, Any]) -> bool:
    return value.get("optional") is True


def _walk(value: Any, path: FieldPath, namespace: str | None) -> Iterator[tuple[FieldPath, Ref]]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, (*path, index), namespace)
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        here: FieldPath = (*path, key)
        if key == "metadata" and not path:
            continue
        if isinstance(item, dict) and not _optional(item):
            name = item.get("name")
            if key in SECRET_KEYS and isinstance(name, str):
                yield (*here, "name"), Ref(SECRET, namespace, name)
            elif key in CONFIG_MAP_KEYS and isinstance(name, str):
                yield (*here, "name"), Ref(CONFIG_MAP, namespace, name)
            elif key == "secret" and isinstance(item.get("secretName"), str):
                yield (*here, "secretName"), Ref(SECRET, namespace, item["secretName"])
            elif key in DESTINATION_KEYS and isinstance(item.get("ref"), dict):
                ref = item["ref"]
                if isinstance(ref.get("name"), str) and isinstance(ref.get("kind"), str):
                    kind = _kind_of(str(ref.get("apiVersion", "v1")), ref["kind"])
                    ref_namespace = ref.get("namespace") or namespace
                    yield (*here, "ref"), Ref(kind, ref_namespace, ref["name"])
                    continue
        if key == "imagePullSecrets" and isinstance(item, list):
            for index, entry in enumerate(item):
                if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                    yield (*here, index, "name"), Ref(SECRET, namespace, entry["name"])
            continue
        yield from _walk(item, here, namespace)


# Kinds whose definitions we can see in a rendering; references to other kinds (a Broker, a
# Channel) are not checked.
CHECKED_KINDS = frozenset({SERVICE, KNATIVE_SERVICE, SECRET, CONFIG_MAP, SERVING_RUNTIME,
                           "serving.kserve.io/InferenceService"})


def check_references(
    objects: Iterable[ManifestObject], allowed: Iterable[Allowed] = ()
) -> Iterator[Problem]:
    """A Problem per reference that the objects of its own rendering do not satisfy."""
    allow = list(allowed)
    by_source: dict[str, list[ManifestObject]] = {}
    for obj in objects:
        by_source.setdefault(obj.source, []).append(obj)
    for source, members in by_source.items():
        if not is_build(source):
            continue
        present = {ref for obj in members for ref in defined(obj)}
        names = {(ref.kind, ref.name) for ref in present}
        cluster_runtimes = {obj.name for obj in members if obj.kind == "ClusterServingRuntime"}
        for obj in members:
            for path, ref in references(obj):
                if ref.kind not in CHECKED_KINDS or any(a.matches(ref) for a in allow):
                    continue
                if ref.kind == SERVING_RUNTIME and (
                    ref.name in cluster_runtimes or ref.name in KSERVE_CLUSTER_RUNTIMES
                    or any(a.matches(Ref("ClusterServingRuntime", None, ref.name)) for a in allow)
                ):
                    continue
                if ref in present or (ref.namespace is None and (ref.kind, ref.name) in names):
                    continue
                if any(p.namespace is None and (p.kind, p.name) == (ref.kind, ref.name) for p in present):
                    continue
                yield Problem.at(
                    obj,
                    path,
                    f"{ref.label()} is not defined by this rendering; define it, or list it as"
                    " living outside the overlay (--allow-ref KIND/NAMESPACE/NAME or --allow-refs FILE)",
                )
