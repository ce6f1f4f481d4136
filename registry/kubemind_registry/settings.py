"""Where the registry lives: `MLFLOW_TRACKING_URI`, or an embedded sqlite store under
`KUBEMIND_HOME` (default ~/.kubemind) so one machine works with no server at all."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RegistrySettings(BaseSettings):
    """Settings of `kubemind models` and the models:/ storage initializer."""

    model_config = SettingsConfigDict(
        env_prefix="KUBEMIND_REGISTRY_",
        extra="ignore",
        use_attribute_docstrings=True,
        # Code (tests, the benchmark) may pass tracking_uri=/home= by field name too.
        populate_by_name=True,
    )

    tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI")
    )
    """MLflow tracking/registry server (http://host:port); unset means the embedded store."""

    home: Path = Field(
        default_factory=lambda: Path.home() / ".kubemind",
        validation_alias=AliasChoices("KUBEMIND_HOME"),
    )
    """kubemind's local state folder; holds the embedded sqlite store and its artifacts."""

    experiment: str = "kubemind-models"
    """MLflow experiment that registration runs are logged under."""

    http_retries: int = Field(default=2, ge=0)
    """Retries of a failed MLflow HTTP request; MLflow's own default (7, exponential backoff)
    makes a down server look like a hang."""

    http_timeout_seconds: int = Field(default=30, gt=0)
    """Timeout of one MLflow HTTP request."""

    download_timeout_seconds: float = Field(default=3600.0, gt=0)
    """Longest one artifact file's download may take, however steadily its bytes arrive."""

    stall_timeout_seconds: float = Field(default=60.0, gt=0)
    """A download that receives less than 64 KiB in this many seconds has stalled and fails
    (a server dripping a byte every 20 s never trips a per-read socket timeout)."""

    @property
    def effective_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def local_artifact_root(self) -> Path | None:
        """Artifact folder of the embedded store; None when a server owns the artifacts."""
        return None if self.tracking_uri else (self.home / "artifacts").resolve()
