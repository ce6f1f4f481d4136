"""Storage URI schemes KServe's storage initializer (and kubemind's) can download from."""

from __future__ import annotations

import re

# KServe v0.20 `SupportedStorageURIPrefixList` plus its OCI modelcar forms; `models:/` is served
# by kubemind's ClusterStorageContainer (the MLflow registry storage initializer).
SUPPORTED_PREFIXES = (
    "gs://",
    "s3://",
    "pvc://",
    "file://",
    "https://",
    "http://",
    "hdfs://",
    "webhdfs://",
    "oci://",
    "oci+fetch://",
    "oci+native://",
    "hf://",
    "models:/",
)

# A pinned registry URI names an immutable version: models:/<name>/<version number>.
PINNED_REGISTRY_URI = re.compile(r"^models:/[^/@]+/[0-9]+$")


def storage_uri_problem(uri: str) -> str | None:
    """Why a storage URI would fail at download time, or None if it is fine."""
    if uri.startswith("/"):
        return None  # a local path inside the container: KServe skips the download
    if not uri.startswith(SUPPORTED_PREFIXES):
        scheme = uri.split("://", 1)[0] if "://" in uri else uri.split(":", 1)[0]
        return (
            f"unsupported storage URI scheme {scheme!r}; supported: {', '.join(SUPPORTED_PREFIXES)}"
        )
    if uri.startswith("models:/") and not PINNED_REGISTRY_URI.match(uri):
        return (
            f"{uri!r} is not pinned: deployable overlays name an immutable registry version "
            "(models:/<name>/<version>); resolve the alias with `kubemind models pin`"
        )
    return None
