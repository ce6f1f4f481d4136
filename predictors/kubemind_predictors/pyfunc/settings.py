"""Settings of the MLflow pyfunc predictor."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kubemind.settings import ComponentSettings


class PyfuncSettings(ComponentSettings):
    """An MLflow pyfunc model from a folder the storage initializer prepared, served over v2."""

    model_config = SettingsConfigDict(env_prefix="KUBEMIND_PYFUNC_")

    model_dir: Path = Path("/mnt/models")
    """Folder prepared by `python -m kubemind_registry.initializer` (holds MLmodel and
    kubemind-model.json)."""

    max_batch_size: int = Field(default=0, ge=0)
    """Largest leading dimension (rows) one request may carry; 0: no limit."""

    predict_workers: int = Field(default=1, ge=1)
    """Threads that run the model's predict; the event loop never does."""

    predict_timeout_seconds: float = Field(default=60.0, gt=0)
    """A predict call running longer than this is answered 504 (the thread cannot be stopped
    and keeps its worker until it returns)."""
