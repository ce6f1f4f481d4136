"""Built-in Kubernetes kinds (ConfigMap, Service, Deployment, ...), checked with the OpenAPI
schemas that the `kubernetes-validate` package carries, in its strict (no unknown fields) form.

`kubernetes_validate.validate` stops at the first error; we load the same schema files and ask
jsonschema for every error, so one run reports everything wrong with an object.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import kubernetes_validate
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

from kubemind.manifests.problems import FieldPath

Finding = tuple[FieldPath, str]


class UnknownKind(Exception):
    """Neither a built-in kind nor one of the CRDs we were given."""


def kubernetes_version() -> str:
    """The newest Kubernetes minor version whose schemas the installed package carries."""
    return str(kubernetes_validate.latest_version())


def _schema_dir() -> str:
    return f"v{kubernetes_version()}-local-strict"


@functools.lru_cache(maxsize=1)
def _definitions() -> Resource[Any]:
    contents = kv_utils.schema_contents(
        f"kubernetes-json-schema/{_schema_dir()}/_definitions.json", kubernetes_version()
    )
    return Resource.from_contents(contents)


@functools.lru_cache(maxsize=256)
def _validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    version = kubernetes_version()
    schema_dir = _schema_dir()
    # The package names its files kind-group-version.json: apps/v1 -> apps-v1, rbac.authorization.k8s.io/v1 -> rbac-v1.
    short_api_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv_utils.schema_contents(
            f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{short_api_version}.json", version
        )
    except FileNotFoundError as exc:
        raise UnknownKind(f"no schema for {kind} in {api_version} (Kubernetes {version})") from exc
    registry: Registry = _definitions() @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.lru_cache(maxsize=1)
def _object_meta_validator() -> jsonschema.protocols.Validator:
    # Custom resources declare `metadata: {type: object}`; the API server checks it as ObjectMeta.
    definitions = _definitions()
    schema = {"$ref": f"{definitions.id()}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    registry: Registry = definitions @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_object_meta(metadata: Any, path: FieldPath = ("metadata",)) -> Iterator[Finding]:
    """Yield findings for a custom resource's metadata, checked as ObjectMeta."""
    yield from _findings(_object_meta_validator(), metadata, path)


def validate(body: dict[str, Any]) -> Iterator[Finding]:
    """Yield (field path, message) for every schema violation; raises UnknownKind."""
    validator = _validator(str(body.get("apiVersion", "")), str(body.get("kind", "")))
    yield from _findings(validator, body, ())


def _findings(
    validator: jsonschema.protocols.Validator, value: Any, prefix: FieldPath
) -> Iterator[Finding]:
    for error in sorted(
        validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path))
    ):
        path: FieldPath = (*prefix, *error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            declared = error.schema.get("properties", {})
            for key in error.instance:
                if key not in declared:
                    yield (*path, key), "unknown field"
            continue
        yield path, _best_message(error)


def _best_message(error: jsonschema.ValidationError) -> str:
    # For oneOf/anyOf (int-or-string and friends) the deepest sub-error says more.
    if error.context:
        return str(jsonschema.exceptions.best_match(error.context).message)
    return str(error.message)
