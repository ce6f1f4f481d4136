"""Settings of the reference `simple` predictor."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kubemind.settings import ComponentSettings


class SimpleSettings(ComponentSettings):
    """Triton's classic `simple` model: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1."""

    model_config = SettingsConfigDict(env_prefix="KUBEMIND_SIMPLE_")

    model_name: str = "simple"
    """Name of the model on the endpoint path."""

    versions: list[str] = Field(default_factory=lambda: ["1"])
    """Versions the model declares (comma-separated on the command line); the highest is the default."""

    max_batch_size: int = Field(default=8, ge=1)
    """Largest batch (leading dimension) one request may carry."""

    string_model: bool = False
    """Also serve Triton's `simple_string` (the same sums and differences on decimal strings)
    and `simple_identity` (BYTES echoed), which Triton's string example clients call."""

    delay_seconds: float = Field(default=0.0, ge=0)
    """Seconds each request waits before it is answered (the event loop stays free): a slower
    model for fault tests and benchmarks (the router's step deadlines, its Ensemble timing)."""

    error_percent: float = Field(default=0.0, ge=0, le=100)
    """Test-only: the share of requests (percent) answered with an internal error, a broken
    candidate for the release controller's tests and benchmark."""
