"""The sha256 manifest logged with every registered model, and its digest.

The manifest lists every file of the model (relative POSIX path, size, sha256) plus its flavor
and v2 signature. Its digest is the sha256 of its canonical JSON; the digest is stored as a
model-version tag, so the registry (not the artifact store) vouches for the manifest, and the
manifest vouches for every file. A tampered file, a tampered manifest and an added file are
all caught by the initializer.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubemind.errors import InvalidInput
from kubemind_registry.errors import UnsafeArtifactPath
from kubemind_registry.served import Signature

MANIFEST_FILE = "kubemind-manifest.json"
MANIFEST_SCHEMA = 1
HASH_CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Manifest:
    flavor: str
    signature: Signature
    files: tuple[FileEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": MANIFEST_SCHEMA,
            "flavor": self.flavor,
            "signature": self.signature.to_dict(),
            "files": [f.to_dict() for f in sorted(self.files, key=lambda f: f.path)],
        }

    def canonical_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.canonical_bytes()).hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        data = json.loads(raw)
        if data.get("schema") != MANIFEST_SCHEMA:
            raise ValueError(f"unsupported manifest schema {data.get('schema')!r}")
        return cls(
            flavor=str(data["flavor"]),
            signature=Signature.from_dict(data["signature"]),
            files=tuple(
                FileEntry(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in data["files"]
            ),
        )


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def build_manifest(model_dir: Path, flavor: str, signature: Signature) -> Manifest:
    """Hash every regular file under `model_dir`; symlinks are refused (they could point
    anywhere on the data scientist's machine and would not survive the upload anyway)."""
    entries = []
    for root, dirs, files in os.walk(model_dir):
        dirs.sort()
        for name in dirs:
            # os.walk lists a symlinked folder but never enters it: it would be silently left
            # out of the manifest and the upload.
            if (Path(root) / name).is_symlink():
                relative = (Path(root) / name).relative_to(model_dir).as_posix()
                raise UnsafeArtifactPath(f"{relative}: symlinked folders cannot be registered")
        for name in sorted(files):
            path = Path(root) / name
            relative = path.relative_to(model_dir).as_posix()
            if path.is_symlink():
                raise UnsafeArtifactPath(f"{relative}: symlinks cannot be registered")
            if relative == MANIFEST_FILE:
                continue
            entries.append(FileEntry(relative, path.stat().st_size, sha256_file(path)))
    if not entries:
        raise InvalidInput(f"{model_dir} holds no files to register")
    return Manifest(flavor=flavor, signature=signature, files=tuple(sorted(entries, key=lambda e: e.path)))


def safe_destination(dest_root: Path, artifact_path: str) -> Path:
    """The local path for `artifact_path` under `dest_root`, refusing anything that escapes it
    (absolute paths, `..` segments, backslashes that Windows-made paths could smuggle in)."""
    normalized = posixpath.normpath(artifact_path)
    if (
        not artifact_path
        or "\\" in artifact_path
        or "\x00" in artifact_path
        or posixpath.isabs(artifact_path)
        or normalized.startswith("../")
        or normalized in ("..", ".")
        or ".." in artifact_path.split("/")
    ):
        raise UnsafeArtifactPath(f"artifact path {artifact_path!r} escapes the destination folder")
    target = (dest_root / normalized).resolve()
    root = dest_root.resolve()
    if root not in target.parents:
        raise UnsafeArtifactPath(f"artifact path {artifact_path!r} escapes the destination folder")
    return dest_root / normalized
