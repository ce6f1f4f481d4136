"""Turning paths into Kubernetes objects: kustomize roots are built, plain YAML files are read."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from kubemind.manifests import yaml_limits
from kubemind.manifests.problems import ManifestObject

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
YAML_SUFFIXES = (".yaml", ".yml")
# kustomize learned `components:` in v3.7; kubectl 1.20 (Debian bookworm's kubernetes-client)
# embeds v2.0.3 and cannot build our overlays.
MIN_KUSTOMIZE = (3, 7)
# How the source of a built overlay's objects is named: release checks (every image tagged,
# every reference defined) apply to what an overlay renders, not to loose sample files.
BUILD_SUFFIX = " (kustomize build)"
# A remote resource whose server never answers must not hang a CI job forever.
KUSTOMIZE_TIMEOUT_SECONDS = 120.0


def is_build(source: str) -> bool:
    return source.endswith(BUILD_SUFFIX)


class RenderError(Exception):
    """kustomize is missing or refused to build a root."""


class NotAnObject(yaml.YAMLError):
    """A YAML document that is not a mapping: it cannot be a Kubernetes object."""


def _version_tuple(text: str) -> tuple[int, ...]:
    match = re.search(r"v?(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


@functools.lru_cache(maxsize=1)
def kustomize_command() -> tuple[str, ...]:
    """`kubectl kustomize` when its embedded kustomize is new enough, else a `kustomize` binary."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        try:
            out = subprocess.run(
                [kubectl, "version", "--client"], capture_output=True, text=True, check=False, timeout=60
            ).stdout
        except subprocess.TimeoutExpired:
            out = ""
        embedded = re.search(r"Kustomize Version:\s*(\S+)", out)
        if embedded and _version_tuple(embedded.group(1)) >= MIN_KUSTOMIZE:
            return (kubectl, "kustomize")
    standalone = shutil.which("kustomize")
    if standalone:
        return (standalone, "build")
    raise RenderError(
        f"no kustomize >= {'.'.join(map(str, MIN_KUSTOMIZE))} found: install kubectl (1.21 or newer) or kustomize"
    )


def render(root: Path, timeout: float = KUSTOMIZE_TIMEOUT_SECONDS) -> str:
    """The YAML stream kustomize builds from a kustomization root."""
    command = [*kustomize_command(), str(root)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RenderError(
            f"{' '.join(command)} did not finish within {timeout:g} s (a remote resource that never answers?)"
        ) from None
    if result.returncode != 0:
        raise RenderError(f"{' '.join(command)} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def is_kustomization(directory: Path) -> bool:
    return any((directory / name).is_file() for name in KUSTOMIZATION_FILES)


def _kustomization(directory: Path) -> dict[str, Any]:
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            try:
                loaded = yaml_limits.load((directory / name).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                return {}  # a root then: building it reports what is wrong, at the file
            return loaded if isinstance(loaded, dict) else {}
    return {}


def _entries(kustomization: dict[str, Any], key: str) -> list[Any]:
    value = kustomization.get(key)
    return value if isinstance(value, list) else []


def kustomize_roots(directory: Path) -> list[Path]:
    """The kustomizations under `directory` that nothing else under it builds on (the overlays).

    Bases and components are validated through the overlays that use them; a Component cannot
    be built on its own.
    """
    candidates = sorted(
        path.parent for name in KUSTOMIZATION_FILES for path in directory.rglob(name)
    )
    referenced: set[Path] = set()
    roots = []
    for candidate in candidates:
        kustomization = _kustomization(candidate)
        for entry in [
            *_entries(kustomization, "resources"),
            *_entries(kustomization, "components"),
            *_entries(kustomization, "bases"),
        ]:
            try:
                target = (candidate / str(entry)).resolve()
                if target.is_dir():
                    referenced.add(target)
            except (OSError, ValueError):
                continue  # not a folder (a URL, a name too long): kustomize says what it is
        if kustomization.get("kind") != "Component":
            roots.append(candidate)
    return [root for root in roots if root.resolve() not in referenced]


def parse_stream(text: str, source: str) -> Iterator[ManifestObject]:
    """The objects in a multi-document YAML stream; `List` kinds are flattened. A document that
    is not a mapping (a top-level list, a bare string) raises NotAnObject; empty ones are skipped."""
    for index, document in enumerate(yaml_limits.load_all(text)):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise NotAnObject(
                f"document {index + 1} is a {_yaml_type(document)}, not a Kubernetes object"
                " (a mapping with apiVersion, kind and metadata)"
            )
        kind = document.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and isinstance(document.get("items"), list):
            for item in document["items"]:
                if isinstance(item, dict):
                    yield ManifestObject(source=source, body=item)
        else:
            yield ManifestObject(source=source, body=document)


def _yaml_type(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def plain_yaml_files(directory: Path) -> list[Path]:
    return sorted(
        path for path in directory.rglob("*") if path.suffix in YAML_SUFFIXES and path.is_file()
    )
