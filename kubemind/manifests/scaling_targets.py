"""KEDA ScaledObjects against what they scale, within one rendering.

The API server accepts a ScaledObject whose target does not exist, or one that another
autoscaler also drives; the first never scales, the second flaps as KEDA's HPA and Knative's
autoscaler (or KServe's own HPA) overwrite each other's replica counts. KServe creates one
Deployment per component, `<isvc>-<component>`, and who scales it depends on the
InferenceService's annotations: Knative in Serverless mode (the default), KServe's HPA in
Standard mode unless `serving.kserve.io/autoscalerClass` is `external` (or `none`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from kubemind.manifests.kserve_webhooks import (
    AUTOSCALER_CLASS,
    COMPONENTS,
    DEPLOYMENT_MODE,
    STANDARD_MODES,
)
from kubemind.manifests.problems import ManifestObject, Problem
from kubemind.manifests.rendering import is_build

TARGET_PATH = ("spec", "scaleTargetRef", "name")
UNSCALED_CLASSES = ("external", "none")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _component_owner(isvc: ManifestObject) -> dict[str, str]:
    """`<isvc>-<component>` -> who else scales it ("" when nobody does)."""
    annotations = {str(k): str(v) for k, v in _dict(_dict(isvc.body.get("metadata")).get("annotations")).items()}
    if annotations.get(DEPLOYMENT_MODE) not in STANDARD_MODES:
        owner = "Knative's autoscaler (Serverless mode)"
    elif annotations.get(AUTOSCALER_CLASS, "hpa") not in UNSCALED_CLASSES:
        owner = f"KServe's {annotations.get(AUTOSCALER_CLASS, 'hpa')} autoscaler"
    else:
        owner = ""
    spec = _dict(isvc.body.get("spec"))
    return {f"{isvc.name}-{component}": owner for component in COMPONENTS if component in spec}


def check_scaling_targets(objects: Iterable[ManifestObject]) -> Iterator[Problem]:
    by_source: dict[str, list[ManifestObject]] = {}
    for obj in objects:
        if is_build(obj.source):
            by_source.setdefault(obj.source, []).append(obj)
    for members in by_source.values():
        deployments = {o.name for o in members if o.kind == "Deployment"}
        components: dict[str, str] = {}
        for isvc in (o for o in members if o.kind == "InferenceService"):
            components.update(_component_owner(isvc))
        for scaled in (o for o in members if o.kind == "ScaledObject" and o.group == "keda.sh"):
            ref = _dict(_dict(scaled.body.get("spec")).get("scaleTargetRef"))
            if ref.get("kind", "Deployment") != "Deployment":
                continue
            name = str(ref.get("name", ""))
            if name in deployments:
                continue
            if name not in components:
                yield Problem.at(scaled, TARGET_PATH, f"Deployment {name!r} is not defined by this rendering"
                                 " (KServe names a component's Deployment <isvc>-<component>)")
            elif components[name]:
                yield Problem.at(scaled, TARGET_PATH, f"{name} is already scaled by {components[name]}: set"
                                 f" {DEPLOYMENT_MODE}: Standard and {AUTOSCALER_CLASS}: external on its"
                                 " InferenceService, or two autoscalers fight over its replicas")
