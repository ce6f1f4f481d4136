"""The CustomResourceDefinitions a cluster serves, read from a folder of CRD YAML files."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# KFServing's API group before the project became KServe; the CRD is the same, and upstream
# samples still use it. A live cluster without the old CRD would refuse these objects.
LEGACY_GROUP_ALIASES = {"serving.kubeflow.org": "serving.kserve.io"}

# The copy of ../shared/crds that ships inside the package (tests keep the two equal), so
# `kubemind validate` works from any folder, not only next to a checkout.
PACKAGED_CRDS = Path(__file__).resolve().parent / "crds"


def default_crd_dir() -> Path:
    """`$KUBEMIND_CRDS` when set, else the CRDs shipped in the package."""
    configured = os.environ.get("KUBEMIND_CRDS")
    return Path(configured) if configured else PACKAGED_CRDS


def missing_crd_dir(crd_dir: Path) -> str | None:
    """Why `crd_dir` cannot serve as a CRD folder, or None when it can."""
    if not crd_dir.exists():
        return f"CRD folder {crd_dir} does not exist"
    if not crd_dir.is_dir():
        return f"CRD folder {crd_dir} is not a folder"
    if not any(crd_dir.rglob("*.y*ml")):
        return f"CRD folder {crd_dir} holds no YAML files"
    return None


@dataclass(frozen=True)
class ServedVersion:
    """One served version of a CRD: its structural schema and whether it is namespaced."""

    group: str
    kind: str
    version: str
    schema: dict[str, Any]
    namespaced: bool


class CrdCatalog:
    """Look-ups of served CRD versions by apiVersion group and kind."""

    def __init__(self, crds: list[dict[str, Any]]):
        self._versions: dict[tuple[str, str], dict[str, ServedVersion]] = {}
        for crd in crds:
            spec = crd.get("spec", {})
            group, kind = spec.get("group", ""), spec.get("names", {}).get("kind", "")
            for version in spec.get("versions", []):
                if not version.get("served", False):
                    continue
                schema = (version.get("schema") or {}).get("openAPIV3Schema") or {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                }
                self._versions.setdefault((group, kind), {})[version["name"]] = ServedVersion(
                    group=group,
                    kind=kind,
                    version=version["name"],
                    schema=schema,
                    namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                )

    def knows(self, group: str) -> bool:
        """Whether any CRD defines kinds in this group (so the group is not a core one)."""
        group = LEGACY_GROUP_ALIASES.get(group, group)
        return any(known_group == group for known_group, _ in self._versions)

    def served_versions(self, group: str, kind: str) -> list[str]:
        group = LEGACY_GROUP_ALIASES.get(group, group)
        return sorted(self._versions.get((group, kind), {}))

    def lookup(self, group: str, kind: str, version: str) -> ServedVersion | None:
        group = LEGACY_GROUP_ALIASES.get(group, group)
        return self._versions.get((group, kind), {}).get(version)


@functools.lru_cache(maxsize=4)
def crd_documents(crd_dir: Path) -> tuple[dict[str, Any], ...]:
    """Every CustomResourceDefinition in the folder (cached, like the catalog)."""
    return tuple(_load_crd_documents(crd_dir))


def _load_crd_documents(crd_dir: Path) -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the KServe CRD alone is 2 MB
    crds = []
    for path in sorted(crd_dir.rglob("*.y*ml")):
        with path.open(encoding="utf-8") as stream:
            for document in yaml.load_all(stream, Loader=loader):
                if (
                    isinstance(document, dict)
                    and document.get("kind") == "CustomResourceDefinition"
                ):
                    crds.append(document)
    return crds


@functools.lru_cache(maxsize=4)
def load_catalog(crd_dir: Path | None) -> CrdCatalog:
    """The catalog for a folder of CRDs (cached: parsing them takes seconds)."""
    return CrdCatalog(_load_crd_documents(crd_dir) if crd_dir is not None else [])
