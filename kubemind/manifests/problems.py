"""What the validator finds, and the manifest objects it finds it in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A field path as a list of keys and list indices, e.g. ["spec", "predictor", "containers", 0].
FieldPath = tuple[str | int, ...]
MAX_MESSAGE = 500


def format_path(path: FieldPath) -> str:
    """`spec.predictor.containers[0].args`; keys that are not plain words are quoted in brackets."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum():
            text += f".{part}" if text else part
        else:
            text += f'["{part}"]'
    return text or "(object)"


@dataclass(frozen=True)
class ManifestObject:
    """One Kubernetes object and where it came from (a file, or an overlay that rendered it)."""

    source: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion", ""))

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def name(self) -> str:
        metadata = self.body.get("metadata")
        return str(metadata.get("name", "")) if isinstance(metadata, dict) else ""

    @property
    def label(self) -> str:
        return f"{self.kind or '?'}/{self.name or '?'}"


@dataclass(frozen=True, order=True)
class Problem:
    """A reason the API server (or kubemind at run time) would reject an object."""

    source: str
    object: str
    path: str
    message: str

    def __post_init__(self) -> None:
        # A message quoting a value must not print a megabyte of it (an expanded alias bomb).
        for name, limit in (("message", MAX_MESSAGE), ("object", 200), ("path", 300)):
            text = getattr(self, name)
            if len(text) > limit:
                object.__setattr__(self, name, text[: limit - 3] + "...")

    @classmethod
    def at(cls, obj: ManifestObject, path: FieldPath, message: str) -> Problem:
        return cls(source=obj.source, object=obj.label, path=format_path(path), message=message)
