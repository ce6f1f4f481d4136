"""Every container image is tagged or pinned by digest.

An untagged image means `:latest`: what runs depends on when a node pulled it, and a rollback
cannot bring back what ran before. Overlays set tags with kustomize's `images:`; a container the
transformer does not reach (a CRD field it does not know) stays untagged, and this says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kubemind.manifests.problems import FieldPath, ManifestObject, Problem

CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


def is_tagged(image: str) -> bool:
    if "@" in image:
        return True
    return ":" in image.rsplit("/", 1)[-1]


def check_image_tags(obj: ManifestObject) -> Iterator[Problem]:
    for path, image in _images(obj.body, ()):
        if not is_tagged(image):
            yield Problem.at(
                obj,
                path,
                f"image {image!r} has no tag or digest (it would pull :latest): set newTag or"
                " digest in the overlay's images:",
            )


def _images(value: Any, path: FieldPath) -> Iterator[tuple[FieldPath, str]]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _images(item, (*path, index))
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        if key in CONTAINER_LISTS and isinstance(item, list):
            for index, container in enumerate(item):
                if isinstance(container, dict) and isinstance(container.get("image"), str):
                    yield (*path, key, index, "image"), container["image"]
        elif key == "container" and isinstance(item, dict) and isinstance(item.get("image"), str):
            yield (*path, key, "image"), item["image"]
        yield from _images(item, (*path, key))
