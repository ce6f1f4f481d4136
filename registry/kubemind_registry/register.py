"""Register a model folder: upload it with its sha256 manifest, create a version, set an alias."""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
from pathlib import Path

from kubemind import audit
from kubemind.errors import InvalidInput
from kubemind_registry.manifest import MANIFEST_FILE, FileEntry, build_manifest
from kubemind_registry.mlflow_store import MlflowRegistry
from kubemind_registry.resolve import (
    DIGEST_TAG,
    FLAVOR_TAG,
    MAX_TAG_CHARS,
    SIGNATURE_TAG,
    ModelRef,
    resolve,
)
from kubemind_registry.served import Signature
from kubemind_registry.signatures import FLAVOR_TAGS, infer_signature
from kubemind_registry.uris import ModelUri


def register_model(
    registry: MlflowRegistry,
    name: str,
    path: Path,
    flavor: str,
    *,
    alias: str | None = None,
    signature: Signature | None = None,
    task: str | None = None,
    owner: str | None = None,
    reference: Path | None = None,
) -> ModelRef:
    if flavor not in FLAVOR_TAGS:
        raise InvalidInput(f"unknown flavor {flavor!r}; choose one of {', '.join(FLAVOR_TAGS)}")
    if "/" in name or "@" in name:
        raise InvalidInput(f"model name {name!r} must not contain '/' or '@'")
    if not path.is_dir():
        raise InvalidInput(f"{path} is not a folder; register the folder that holds the model")
    model_dir = path

    signature = signature or infer_signature(model_dir, flavor)
    manifest = build_manifest(model_dir, flavor, signature)
    profile: dict[str, bytes] = {}
    if reference is not None:
        # The drift profile travels in the version's artifact, listed in its manifest, so the
        # storage initializer downloads and verifies it with the model (the drift service reads it).
        from kubemind.drift.profile import PROFILE_FILE, ReferenceProfile, read_payloads

        content = ReferenceProfile.of_payloads(name, read_payloads(reference)).to_json().encode()
        profile[PROFILE_FILE] = content
        entry = FileEntry(PROFILE_FILE, len(content), hashlib.sha256(content).hexdigest())
        manifest = dataclasses.replace(manifest, files=tuple(sorted([*manifest.files, entry], key=lambda e: e.path)))
    framework, default_task = FLAVOR_TAGS[flavor]
    tags = {
        "framework": framework,
        "task": task or default_task,
        "owner": owner or getpass.getuser(),
        FLAVOR_TAG: flavor,
        DIGEST_TAG: manifest.digest,
    }
    signature_json = json.dumps(signature.to_dict(), separators=(",", ":"))
    if len(signature_json) <= MAX_TAG_CHARS:
        tags[SIGNATURE_TAG] = signature_json

    extra_files = {MANIFEST_FILE: json.dumps(manifest.to_dict(), indent=2).encode(), **profile}
    run_id, source = registry.log_model_folder(
        model_dir,
        extra_files=extra_files,
        run_name=f"register-{name}",
        tags={k: v for k, v in tags.items() if k != SIGNATURE_TAG},
    )
    version = registry.create_version(name, source, run_id, tags)
    audit.record("models.register", {"kind": "RegisteredModel", "name": name}, home=registry.settings.home,
                 model=name, version=version, after={"source": source, "digest": manifest.digest, "flavor": flavor})
    if alias:
        set_alias(registry, name, alias, version)
    return resolve(registry, ModelUri(name=name, version=version))


def set_alias(registry: MlflowRegistry, name: str, alias: str, version: str) -> ModelRef:
    before = registry.alias_version(name, alias)
    registry.set_alias(name, alias, version)
    audit.record("models.alias", {"kind": "RegisteredModelAlias", "name": f"{name}@{alias}"},
                 home=registry.settings.home, model=name, version=version, before=before, after=version)
    return resolve(registry, ModelUri(name=name, alias=alias))

