"""Checks a value against a CRD's structural `openAPIV3Schema`, as the API server does.

A plain JSON-Schema validator gets Kubernetes wrong in four ways, all handled here:
unknown fields are rejected (strict field validation) unless `x-kubernetes-preserve-unknown-fields`
keeps them; `x-kubernetes-int-or-string` admits both; list-type `map`/`set` lists must have
unique keys/items; and `x-kubernetes-validations` CEL rules apply at their node.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from kubemind.manifests import cel_rules
from kubemind.manifests.problems import FieldPath, format_path

log = logging.getLogger(__name__)

Finding = tuple[FieldPath, str]

_TYPE_CHECKS = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}

# Fields every embedded or top-level object carries; the API server checks them itself.
_OBJECT_ENVELOPE = ("apiVersion", "kind", "metadata")


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate(
    value: Any, schema: dict[str, Any], path: FieldPath = (), strict: bool = True
) -> Iterator[Finding]:
    """Yield (field path, message) for each way `value` breaks `schema`.

    `strict` reports unknown fields; it is off inside allOf/anyOf/oneOf/not branches, which in a
    structural schema only add value constraints and never declare fields.
    """
    if value is None:
        # Non-nullable nulls are pruned by the API server before validation.
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _TYPE_CHECKS["integer"](value)):
            yield path, f"must be an integer or a string, got {_describe(value)}"
            return
    elif "type" in schema:
        expected = schema["type"]
        if not _TYPE_CHECKS.get(expected, lambda v: True)(value):
            yield path, f"must be of type {expected}, got {type(value).__name__} {_describe(value)}"
            return

    findings = list(_value_constraints(value, schema, path))
    if isinstance(value, dict):
        findings.extend(_object_fields(value, schema, path, strict))
    elif isinstance(value, list):
        findings.extend(_array_items(value, schema, path, strict))
    findings.extend(_combinators(value, schema, path))
    yield from findings
    if not findings:
        yield from _cel(value, schema, path)


def _value_constraints(value: Any, schema: dict[str, Any], path: FieldPath) -> Iterator[Finding]:
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(repr(option) for option in schema["enum"])
        yield path, f"unsupported value {_describe(value)}: supported values: {supported}"
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            yield path, f"{_describe(value)} does not match the pattern {schema['pattern']!r}"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            yield path, f"must have at most {schema['maxLength']} characters"
        if "minLength" in schema and len(value) < schema["minLength"]:
            yield path, f"must have at least {schema['minLength']} characters"
    if _TYPE_CHECKS["number"](value):
        if "minimum" in schema:
            exclusive = schema.get("exclusiveMinimum") is True
            if value < schema["minimum"] or (exclusive and value == schema["minimum"]):
                relation = "greater than" if exclusive else "greater than or equal to"
                yield path, f"{value} must be {relation} {schema['minimum']}"
        if "maximum" in schema:
            exclusive = schema.get("exclusiveMaximum") is True
            if value > schema["maximum"] or (exclusive and value == schema["maximum"]):
                relation = "less than" if exclusive else "less than or equal to"
                yield path, f"{value} must be {relation} {schema['maximum']}"
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            yield path, f"must have at most {schema['maxItems']} items"
        if "minItems" in schema and len(value) < schema["minItems"]:
            yield path, f"must have at least {schema['minItems']} items"
    if isinstance(value, dict):
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            yield path, f"must have at most {schema['maxProperties']} fields"
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            yield path, f"must have at least {schema['minProperties']} fields"


def _object_fields(
    value: dict[str, Any], schema: dict[str, Any], path: FieldPath, strict: bool
) -> Iterator[Finding]:
    for required in schema.get("required", []):
        if value.get(required) is None:
            yield (*path, required), "required field is missing"
    properties: dict[str, Any] = schema.get("properties", {})
    additional = schema.get("additionalProperties")
    preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
    embedded = schema.get("x-kubernetes-embedded-resource", False) or not path
    for key, item in value.items():
        if key in properties:
            yield from validate(item, properties[key], (*path, key), strict)
        elif isinstance(additional, dict):
            yield from validate(item, additional, (*path, key), strict)
        elif embedded and key in _OBJECT_ENVELOPE:
            continue  # checked by the caller (metadata) or by the API server (apiVersion, kind)
        elif strict and not preserve and additional is not True:
            yield (*path, key), "unknown field"


def _array_items(
    value: list[Any], schema: dict[str, Any], path: FieldPath, strict: bool
) -> Iterator[Finding]:
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            yield from validate(item, items, (*path, index), strict)
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        seen: list[Any] = []
        for index, item in enumerate(value):
            if item in seen:
                yield (*path, index), f"duplicate value {_describe(item)} in a list of type set"
            seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen_keys: set[tuple[Any, ...]] = set()
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            key = tuple(repr(item.get(name)) for name in keys)
            if key in seen_keys:
                described = ", ".join(f"{name}={item.get(name)!r}" for name in keys)
                yield (*path, index), f"duplicate entry with {described} in a list keyed by {keys}"
            seen_keys.add(key)


def _combinators(value: Any, schema: dict[str, Any], path: FieldPath) -> Iterator[Finding]:
    def passes(branch: dict[str, Any]) -> bool:
        return not any(True for _ in validate(value, branch, path, strict=False))

    for branch in schema.get("allOf", []):
        yield from validate(value, branch, path, strict=False)
    if "anyOf" in schema and not any(passes(branch) for branch in schema["anyOf"]):
        yield path, "matches none of the allowed alternatives (anyOf)"
    if "oneOf" in schema and sum(passes(branch) for branch in schema["oneOf"]) != 1:
        yield path, "must match exactly one of the alternatives (oneOf)"
    if "not" in schema and passes(schema["not"]):
        yield path, "matches a schema it must not match (not)"


def _cel(value: Any, schema: dict[str, Any], path: FieldPath) -> Iterator[Finding]:
    for validation in schema.get("x-kubernetes-validations", []):
        rule = validation.get("rule", "")
        if not rule or cel_rules.is_transition_rule(rule):
            continue
        try:
            satisfied = cel_rules.evaluate(rule, value)
        except cel_rules.CelRuleError as exc:
            log.debug("CEL rule skipped at %s: %s", format_path(path), exc)
            continue
        if not satisfied:
            rule_path = path
            field_path = validation.get("fieldPath", "")
            if field_path:
                rule_path = (*path, *[part for part in field_path.split(".") if part])
            yield rule_path, validation.get("message") or f"failed rule: {rule}"
