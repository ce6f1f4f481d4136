"""The reference profile: every feature's distribution in the data a model version was
validated on, computed once at `kubemind models register --reference DATA` and stored with the
version (`drift-reference.json` in its artifact folder), so the drift service reads it from the
downloaded model like any other artifact (principle 7: no registry call at run time)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubemind.drift.features import Row, rows_of
from kubemind.drift.statistics import FeatureProfile
from kubemind.errors import InvalidInput

PROFILE_FILE = "drift-reference.json"
FORMAT = 1


@dataclass
class ReferenceProfile:
    model: str
    features: dict[str, FeatureProfile] = field(default_factory=dict)

    @classmethod
    def of_rows(cls, model: str, rows: Iterable[Row]) -> ReferenceProfile:
        columns: dict[str, list[Any]] = {}
        for row in rows:
            for name, value in row.items():
                columns.setdefault(name, []).append(value)
        return cls(model, {name: FeatureProfile.of(name, values) for name, values in sorted(columns.items())})

    @classmethod
    def of_payloads(cls, model: str, payloads: Sequence[Any]) -> ReferenceProfile:
        return cls.of_rows(model, (row for payload in payloads for row in rows_of(payload)))

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "model": self.model,
                           "features": {n: f.to_dict() for n, f in self.features.items()}})  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> ReferenceProfile:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise InvalidInput(f"drift reference: format {data.get('format')!r} is not {FORMAT}")
        return cls(str(data["model"]), {n: FeatureProfile.from_dict(f) for n, f in data["features"].items()})

    @classmethod
    def load(cls, path: Path) -> ReferenceProfile:
        if path.is_dir():
            path = path / PROFILE_FILE
        return cls.from_json(path.read_text())


def read_payloads(path: Path) -> list[Any]:
    """Reference DATA: JSON Lines, one payload per line (v2 request or response bodies, OpenAI
    requests or replies), or one JSON array of them."""
    text = path.read_text()
    if text.lstrip().startswith("["):
        payloads = json.loads(text)
    else:
        try:
            payloads = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}: not JSON Lines ({exc})") from None
    if not payloads:
        raise InvalidInput(f"{path}: no payloads")
    return list(payloads)


__all__ = ["PROFILE_FILE", "ReferenceProfile", "read_payloads"]
