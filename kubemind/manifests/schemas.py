"""Schema validation of one object: custom resources against their CRD, built-in kinds against
Kubernetes' own OpenAPI schemas. This is what the API server checks before admission webhooks run.
"""

from __future__ import annotations

from collections.abc import Iterator

from kubemind.manifests import core_kinds, structural
from kubemind.manifests.crd_catalog import CrdCatalog
from kubemind.manifests.problems import ManifestObject, Problem


def check_schema(obj: ManifestObject, catalog: CrdCatalog) -> Iterator[Problem]:
    """Yield a Problem for each way the object breaks its kind's schema."""
    if not obj.kind or not obj.api_version:
        yield Problem.at(obj, (), "apiVersion and kind are required")
        return
    if catalog.knows(obj.group):
        yield from _check_custom_resource(obj, catalog)
        return
    try:
        findings = list(core_kinds.validate(obj.body))
    except core_kinds.UnknownKind as exc:
        yield Problem.at(obj, ("kind",), f"{exc}; pass --crds with the CRD that defines it")
        return
    for path, message in findings:
        yield Problem.at(obj, path, message)


def _check_custom_resource(obj: ManifestObject, catalog: CrdCatalog) -> Iterator[Problem]:
    served = catalog.lookup(obj.group, obj.kind, obj.version)
    if served is None:
        versions = catalog.served_versions(obj.group, obj.kind)
        if versions:
            message = f"{obj.group}/{obj.version} is not served for {obj.kind}; served: {', '.join(versions)}"
        else:
            message = f"the CRDs define no kind {obj.kind!r} in {obj.group}"
        yield Problem.at(obj, ("apiVersion",) if versions else ("kind",), message)
        return
    metadata = obj.body.get("metadata")
    if not isinstance(metadata, dict) or not (metadata.get("name") or metadata.get("generateName")):
        yield Problem.at(obj, ("metadata", "name"), "required field is missing")
    else:
        for path, message in core_kinds.validate_object_meta(metadata):
            yield Problem.at(obj, path, message)
    # metadata is ObjectMeta, checked above; the CRD schema declares it only as `type: object`.
    body = {key: value for key, value in obj.body.items() if key != "metadata"}
    for path, message in structural.validate(body, served.schema):
        yield Problem.at(obj, path, message)
