"""What the storage initializer leaves next to a model, and how a predictor reads it.

The initializer writes `kubemind-model.json` into the model folder: the registered name, the
MLflow version, run id, manifest digest and the v2 signature. A predictor's `load()` reads it
with `read_served_model` to report that signature as its v2 metadata and the MLflow version as
its served version. This module must not import MLflow (design principle 7): the runtime reads
only the artifact, never the registry.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubemind.datatypes import V2_NAMES
from kubemind.errors import ModelNotReady

METADATA_FILE = "kubemind-model.json"



@dataclass(frozen=True)
class TensorSignature:
    """One v2 input or output: name, datatype, shape (-1 marks a variable dimension)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.datatype not in V2_NAMES:
            raise ValueError(f"tensor {self.name!r}: {self.datatype!r} is not a v2 datatype")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> TensorSignature:
        return cls(str(entry["name"]), str(entry["datatype"]), tuple(int(d) for d in entry["shape"]))


@dataclass(frozen=True)
class Signature:
    """A model's v2 signature: its input and output tensors."""

    inputs: tuple[TensorSignature, ...] = ()
    outputs: tuple[TensorSignature, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        return cls(
            inputs=tuple(TensorSignature.from_dict(t) for t in data.get("inputs", [])),
            outputs=tuple(TensorSignature.from_dict(t) for t in data.get("outputs", [])),
        )


@dataclass(frozen=True)
class ServedModel:
    """The registry facts about the model folder a predictor serves."""

    name: str
    version: str
    run_id: str
    digest: str
    flavor: str
    source_uri: str
    signature: Signature = field(default_factory=Signature)
    files: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "digest": self.digest,
            "flavor": self.flavor,
            "source_uri": self.source_uri,
            "signature": self.signature.to_dict(),
            "files": list(self.files),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServedModel:
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            run_id=str(data.get("run_id", "")),
            digest=str(data["digest"]),
            flavor=str(data.get("flavor", "")),
            source_uri=str(data.get("source_uri", "")),
            signature=Signature.from_dict(data.get("signature", {})),
            files=tuple(str(f) for f in data.get("files", [])),
        )


def read_served_model(model_dir: str | os.PathLike[str]) -> ServedModel:
    """The metadata the initializer left in `model_dir`.

    Raises ModelNotReady when the file is missing or unreadable: a folder without it was not
    (completely) initialized, so the predictor must not report itself ready.
    """
    path = Path(model_dir) / METADATA_FILE
    try:
        return ServedModel.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ModelNotReady(
            f"{path} not found: {model_dir} was not prepared by kubemind's storage initializer"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelNotReady(f"{path} is not valid kubemind model metadata: {exc}") from None


def served_model_if_initialized(model_dir: str | os.PathLike[str]) -> ServedModel | None:
    """The initializer's metadata when `model_dir` has it; None for a folder it did not prepare
    (a predictor pointed at plain weights still serves them, under its default version)."""
    if not (Path(model_dir) / METADATA_FILE).exists():
        return None
    return read_served_model(model_dir)


def write_served_model(model_dir: Path, served: ServedModel) -> None:
    """Write the metadata file atomically: it is the initializer's "complete" marker."""
    tmp = model_dir / f".{METADATA_FILE}.tmp"
    tmp.write_text(json.dumps(served.to_dict(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, model_dir / METADATA_FILE)
