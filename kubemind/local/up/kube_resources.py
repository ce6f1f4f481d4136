"""What the local Kubernetes API serves, from the CRDs kubemind ships: discovery and tables.

Every served version of every `serving.kserve.io` CRD, kubemind's own `kubemind.io` ones (the
RolloutPolicy the release controller reads) and Istio's `networking.istio.io` ones is listed,
readable and watchable, with its short names and printer columns, so `kubectl get isvc` prints
the columns a cluster prints. InferenceServices and VirtualServices take writes: they are what
the local runner runs and the release controller drives (canary weights; the shadow phase's
mirror); the rest come from the overlay and are read-only here (405).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kubemind.manifests.crd_catalog import crd_documents, default_crd_dir

GROUP = "serving.kserve.io"
# kubemind's own kinds, read-only here: the release controller reads RolloutPolicies. Istio's
# networking kinds: the gateway runs their routes, and the controller mirrors through them.
GROUPS = (GROUP, "kubemind.io", "networking.istio.io")
WRITABLE_KINDS = frozenset({"InferenceService", "VirtualService"})
KUBERNETES_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-kubemind-up", "platform": "linux/amd64"}
WRITE_VERBS = ["create", "delete", "patch", "update"]
READ_VERBS = ["get", "list", "watch"]
NAME_COLUMN = {"name": "Name", "type": "string", "format": "name", "priority": 0,
               "description": "Name must be unique within a namespace."}


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    namespaced: bool
    columns: tuple[dict[str, Any], ...]
    """The CRD's additionalPrinterColumns."""
    has_status: bool

    @property
    def writable(self) -> bool:
        return self.kind in WRITABLE_KINDS

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    def discovery(self) -> list[dict[str, Any]]:
        """The APIResource entries: the resource and its status subresource."""
        main = {"name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
                "kind": self.kind, "verbs": READ_VERBS + (WRITE_VERBS if self.writable else []),
                "shortNames": list(self.short_names), "categories": ["all", "kserve"] if self.group == GROUP and self.writable else []}
        entries = [main]
        if self.has_status:
            entries.append({"name": f"{self.plural}/status", "singularName": "", "namespaced": self.namespaced,
                            "kind": self.kind, "verbs": ["get", *(["patch", "update"] if self.writable else [])]})
        return entries


@functools.lru_cache(maxsize=4)
def served_resources(crd_dir: Path | None = None) -> tuple[Resource, ...]:
    found = []
    for crd in crd_documents(crd_dir or default_crd_dir()):
        spec = crd.get("spec", {})
        if spec.get("group") not in GROUPS:
            continue
        names = spec.get("names", {})
        for version in spec.get("versions", []):
            if not version.get("served", False):
                continue
            found.append(Resource(
                group=str(spec["group"]), version=str(version["name"]), kind=str(names["kind"]), plural=str(names["plural"]),
                singular=str(names.get("singular") or names["kind"].lower()),
                short_names=tuple(names.get("shortNames") or ()),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                columns=tuple(version.get("additionalPrinterColumns") or ()),
                has_status="status" in (version.get("subresources") or {}),
            ))
    return tuple(sorted(found, key=lambda r: (r.version, r.plural)))


def find_resource(version: str, plural: str, group: str = GROUP) -> Resource | None:
    return next((r for r in served_resources()
                 if r.group == group and r.version == version and r.plural == plural), None)


def versions(group: str = GROUP) -> list[str]:
    """Served versions of a group, preferred (the newest) first."""
    return sorted({r.version for r in served_resources() if r.group == group},
                  key=lambda v: (not v.startswith("v1beta"), v))


# -- discovery documents ----------------------------------------------------------------------
def api_versions(address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]}


def core_resources() -> dict[str, Any]:
    """Of the core group only namespaces (get, list): kubectl asks for one when a get finds nothing."""
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
        {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
         "verbs": ["get", "list"], "shortNames": ["ns"]}]}


def namespace(name: str, creation: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "creationTimestamp": creation},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def api_group(group: str = GROUP) -> dict[str, Any]:
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions(group)]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": listed, "preferredVersion": listed[0]}


def api_group_list() -> dict[str, Any]:
    groups = []
    for name in GROUPS:
        group = api_group(name)
        group.pop("kind")
        group.pop("apiVersion")
        groups.append(group)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_resource_list(version: str, group: str = GROUP) -> dict[str, Any] | None:
    resources = [entry for r in served_resources() if r.group == group and r.version == version
                 for entry in r.discovery()]
    if not resources:
        return None
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}",
            "resources": resources}


# -- OpenAPI v3: only what kubectl reads to learn that the server validates fields itself ---------
FIELD_VALIDATION = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True},
                    "description": "Ignore, Warn or Strict: how unknown fields are treated."}


def _openapi_document(version: str) -> dict[str, Any]:
    paths = {}
    for resource in served_resources():
        if resource.version != version:
            continue
        namespace = "/namespaces/{namespace}" if resource.namespaced else ""
        gvk = {"group": GROUP, "version": version, "kind": resource.kind}
        operation = {"operationId": f"patch{resource.kind}", "x-kubernetes-group-version-kind": gvk,
                     "parameters": [FIELD_VALIDATION], "responses": {"200": {"description": "OK"}}}
        paths[f"/apis/{GROUP}/{version}{namespace}/{resource.plural}/{{name}}"] = {"patch": operation}
    return {"openapi": "3.0.0", "info": {"title": "kubemind up", "version": version}, "paths": paths}


def openapi_v3_root() -> dict[str, Any]:
    paths = {}
    for version in versions():
        digest = hashlib.sha256(json.dumps(_openapi_document(version), sort_keys=True).encode()).hexdigest()[:16]
        paths[f"apis/{GROUP}/{version}"] = {"serverRelativeURL": f"/openapi/v3/apis/{GROUP}/{version}?hash={digest}"}
    return {"paths": paths}


def openapi_v3_group(version: str) -> dict[str, Any] | None:
    return _openapi_document(version) if version in versions() else None


# -- tables (kubectl get) -----------------------------------------------------------------------
def table(resource: Resource, objects: list[dict[str, Any]], resource_version: str,
          now: datetime | None = None) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table with the CRD's printer columns, as the API server builds for kubectl."""
    now = now or datetime.now(timezone.utc)
    columns = [NAME_COLUMN, *({"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
                               "description": c.get("description", ""), "priority": int(c.get("priority", 0))}
                              for c in resource.columns)]
    rows = []
    for obj in objects:
        cells: list[Any] = [obj.get("metadata", {}).get("name", "")]
        for column in resource.columns:
            found = json_path(obj, str(column["jsonPath"]))
            cells.append(_cell(found, str(column.get("type", "string")), now))
        rows.append({"cells": cells, "object": {
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": columns, "rows": rows}


def _cell(found: list[Any], kind: str, now: datetime) -> Any:
    if not found:
        return None
    if kind == "date" and isinstance(found[0], str):
        try:
            then = datetime.fromisoformat(found[0].replace("Z", "+00:00"))
        except ValueError:
            return found[0]
        return human_duration((now - then).total_seconds())
    if len(found) == 1:
        return found[0]
    return ",".join(str(value) for value in found)


def human_duration(seconds: float) -> str:
    """Kubernetes' HumanDuration: 45s, 3m12s, 25m, 5h3m, 20h, 4d."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 600:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    if s < 3 * 3600:
        return f"{s // 60}m"
    if s < 8 * 3600:
        return f"{s // 3600}h{(s % 3600) // 60}m" if (s % 3600) // 60 else f"{s // 3600}h"
    if s < 48 * 3600:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


# The JSONPath forms printer columns use: .a.b, [*], [N], [?(@.key==value)].
_SEGMENT = re.compile(r"\.([A-Za-z0-9_-]+)|\[\*\]|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*([^)]+)\)\]")


def json_path(obj: Any, path: str) -> list[Any]:
    nodes = [obj]
    position = 0
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    while position < len(path):
        match = _SEGMENT.match(path, position)
        if match is None:
            raise ValueError(f"JSONPath {path!r}: cannot read from {path[position:]!r}")
        position = match.end()
        name, index, key, literal = match.groups()
        following: list[Any] = []
        for node in nodes:
            if name is not None:
                if isinstance(node, dict) and name in node:
                    following.append(node[name])
            elif index is not None:
                if isinstance(node, list) and int(index) < len(node):
                    following.append(node[int(index)])
            elif key is not None:
                wanted = _literal(literal)
                following += [item for item in node if isinstance(node, list) and isinstance(item, dict)
                              and _lookup(item, key) == wanted] if isinstance(node, list) else []
            elif isinstance(node, list):
                following += node
        nodes = following
    return nodes


def _lookup(item: dict[str, Any], dotted: str) -> Any:
    value: Any = item
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _literal(text: str) -> Any:
    text = text.strip()
    if text[:1] in "'\"" and text[-1:] == text[:1]:
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        return text
