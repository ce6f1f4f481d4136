"""`models:/NAME@ALIAS` and `models:/NAME/VERSION`, parsed and printed."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kubemind_registry.errors import InvalidModelUri

# MLflow's model names allow most characters; "/" and "@" would make the URI ambiguous.
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[A-Za-z0-9_\-]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>[0-9]+)$")


@dataclass(frozen=True)
class ModelUri:
    name: str
    version: str | None = None
    alias: str | None = None

    @property
    def is_pinned(self) -> bool:
        """An immutable reference: a version number, not an alias that can move."""
        return self.version is not None

    def __str__(self) -> str:
        return f"models:/{self.name}/{self.version}" if self.version else f"models:/{self.name}@{self.alias}"


def parse_model_uri(uri: str) -> ModelUri:
    if match := _ALIAS_URI.match(uri):
        return ModelUri(name=match["name"], alias=match["alias"])
    if match := _VERSION_URI.match(uri):
        return ModelUri(name=match["name"], version=match["version"])
    raise InvalidModelUri(
        f"{uri!r} is not a model URI; expected models:/NAME@ALIAS or models:/NAME/VERSION"
    )


def pinned_uri(name: str, version: str) -> str:
    return str(ModelUri(name=name, version=version))
