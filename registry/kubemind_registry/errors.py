"""Registry errors: subclasses of kubemind's one error base, so the CLI and the initializer
print one clear line and exit non-zero instead of a traceback."""

from __future__ import annotations

from http import HTTPStatus

from kubemind.errors import (
    BackendTimeout,
    BackendUnavailable,
    InvalidInput,
    KubemindError,
    ModelNotFound,
)


class InvalidModelUri(InvalidInput):
    """A URI that is not `models:/NAME@ALIAS` or `models:/NAME/VERSION`."""


class RegistryUnavailable(BackendUnavailable):
    """The MLflow tracking/registry server cannot be reached (or answered with a server error)."""


class DownloadStalled(BackendTimeout):
    """An artifact download ran past its deadline or stopped making progress."""


class ModelVersionNotFound(ModelNotFound):
    """The registry has no such model, version or alias."""


class NotAKubemindModel(KubemindError):
    """The model version was not registered by kubemind (no manifest digest tag)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY


class ArtifactIntegrityError(KubemindError):
    """A downloaded file does not match the manifest (tampered, truncated or unexpected)."""

    status = HTTPStatus.BAD_GATEWAY


class UnsafeArtifactPath(KubemindError):
    """An artifact path would land outside the destination folder."""

    status = HTTPStatus.BAD_GATEWAY


class StalePins(KubemindError):
    """`pin --check`: a pinned version no longer matches what its alias resolves to."""

    status = HTTPStatus.PRECONDITION_FAILED
