"""storageUri -> the local folder a component reads as /mnt/models.

`models:/` goes through the registry's storage initializer into the node cache (what the
ClusterStorageContainer's init container does in a pod; a second `up` downloads nothing).
The ClusterStorageContainer's own env (the cluster's MLflow address) is not used: locally the
registry is the one `kubemind models` talks to ($MLFLOW_TRACKING_URI or the embedded store).
`file://` URIs and plain paths are used in place. specs.py has already refused other schemes.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from kubemind.local.node_cache import initialize_into_cache
from kubemind.local.up.specs import NotRunnableLocally


def local_model_dir(uri: str, cache_dir: Path | None, prefix: str = "") -> Path:
    if uri.startswith("models:/"):
        folder, _served = initialize_into_cache(uri, cache_dir, prefix=prefix)
        return folder
    path = Path(unquote(urlparse(uri).path)) if uri.startswith("file://") else Path(uri)
    if not path.exists():
        raise NotRunnableLocally(f"storageUri {uri}: {path} does not exist on this machine")
    return path
