"""Knative's operator ConfigMaps (config-autoscaler, config-deployment, config-features, ...).

Knative ignores keys it does not know, so a misspelt key silently does nothing. Each upstream
ConfigMap documents every key it reads in its `_example` block, one unindented `key: value`
line per key (a few, like queue-sidecar-image, are set in `data` itself); those are the keys we
check against.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from kubemind.manifests.problems import ManifestObject, Problem

KNATIVE_NAMESPACES = ("knative-serving", "knative-eventing")
EXAMPLE_KEY = "_example"
_DOCUMENTED_KEY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*):")


@functools.lru_cache(maxsize=4)
def upstream_keys(crd_dir: Path | None) -> dict[str, frozenset[str]]:
    """ConfigMap name -> the keys its upstream `_example` block documents."""
    known: dict[str, frozenset[str]] = {}
    if crd_dir is None:
        return known
    for path in sorted(crd_dir.rglob("*.y*ml")):
        with path.open(encoding="utf-8") as stream:
            for document in yaml.safe_load_all(stream):
                if not isinstance(document, dict) or document.get("kind") != "ConfigMap":
                    continue
                example = (document.get("data") or {}).get(EXAMPLE_KEY, "")
                keys = {
                    m.group(1)
                    for line in example.splitlines()
                    if (m := _DOCUMENTED_KEY.match(line))
                }
                known[document["metadata"]["name"]] = frozenset(keys)
    return known


def check_knative_config(obj: ManifestObject, crd_dir: Path | None) -> Iterator[Problem]:
    """Yield a Problem for each data key of a Knative ConfigMap that upstream does not read."""
    if obj.kind != "ConfigMap" or obj.api_version != "v1":
        return
    metadata = obj.body.get("metadata") or {}
    if metadata.get("namespace") not in KNATIVE_NAMESPACES:
        return
    known = upstream_keys(crd_dir).get(obj.name)
    if known is None:
        return  # not one of the ConfigMaps we have upstream copies of
    for key in obj.body.get("data") or {}:
        if key != EXAMPLE_KEY and key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            yield Problem.at(
                obj,
                ("data", key),
                f"{obj.name} has no key {key!r} upstream, so Knative ignores it{hint}",
            )
