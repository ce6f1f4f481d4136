"""`models:/NAME@ALIAS` or `models:/NAME/VERSION` -> an immutable `ModelRef`.

Resolution happens at release time (pin) and in the storage initializer, never in a predictor's
request path (design principle 7).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kubemind_registry.errors import ArtifactIntegrityError, NotAKubemindModel
from kubemind_registry.manifest import MANIFEST_FILE, Manifest
from kubemind_registry.mlflow_store import MlflowRegistry, VersionInfo
from kubemind_registry.served import Signature
from kubemind_registry.uris import ModelUri, parse_model_uri, pinned_uri

# Model-version tags kubemind writes at registration.
DIGEST_TAG = "kubemind.digest"
FLAVOR_TAG = "kubemind.flavor"
SIGNATURE_TAG = "kubemind.signature"
# MLflow caps tag values (5000 characters in its SQL store); longer signatures are read from
# the manifest instead.
MAX_TAG_CHARS = 5000


@dataclass(frozen=True)
class ModelRef:
    """One immutable model version and what is needed to serve and audit it."""

    name: str
    version: str
    source: str
    run_id: str
    digest: str
    flavor: str
    signature: Signature
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        """The pinned URI: what goes into an overlay's storageUri."""
        return pinned_uri(self.name, self.version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "run_id": self.run_id,
            "digest": self.digest,
            "flavor": self.flavor,
            "aliases": list(self.aliases),
            "signature": self.signature.to_dict(),
            # framework, task, owner and kubemind's own; the signature is printed above.
            "tags": {k: v for k, v in sorted(self.tags.items()) if k != SIGNATURE_TAG},
        }


def resolve(registry: MlflowRegistry, uri: str | ModelUri) -> ModelRef:
    parsed = parse_model_uri(uri) if isinstance(uri, str) else uri
    info = registry.get_version(parsed)
    digest = info.tags.get(DIGEST_TAG)
    if not digest:
        raise NotAKubemindModel(
            f"{parsed} (version {info.version}) has no {DIGEST_TAG} tag: register it with"
            " `kubemind models register` so its files can be verified"
        )
    signature_json = info.tags.get(SIGNATURE_TAG)
    try:
        signature = (
            Signature.from_dict(json.loads(signature_json))
            if signature_json
            else read_manifest(registry, info).signature
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ArtifactIntegrityError(f"{parsed}: the {SIGNATURE_TAG} tag is unreadable: {exc}") from None
    return ModelRef(
        name=info.name,
        version=info.version,
        source=info.source,
        run_id=info.run_id,
        digest=digest,
        flavor=info.tags.get(FLAVOR_TAG, ""),
        signature=signature,
        aliases=info.aliases,
        tags=info.tags,
    )


def read_manifest(registry: MlflowRegistry, info: VersionInfo | ModelRef) -> Manifest:
    raw = registry.read_small_file(info.source, MANIFEST_FILE)
    try:
        return Manifest.from_bytes(raw)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ArtifactIntegrityError(
            f"{MANIFEST_FILE} of {info.source} is unreadable: {type(exc).__name__}: {str(exc)[:300]}"
        ) from None
