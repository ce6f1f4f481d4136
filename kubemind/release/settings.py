"""Settings of the release controller (`python -m kubemind.release`, `kubemind rollout`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReleaseSettings(BaseSettings):
    """The rollout controller: which API server, which namespace, which Prometheus."""

    model_config = SettingsConfigDict(env_prefix="KUBEMIND_RELEASE_", extra="ignore",
                                      use_attribute_docstrings=True)

    kubeconfig: str | None = None
    """Kubeconfig of the API server (`kubemind up` writes one); unset: $KUBECONFIG, ~/.kube/config,
    or the pod's service account on a cluster."""

    context: str | None = None
    """Kubeconfig context (default: its current one)."""

    namespace: str = "kubemind"
    """The namespace whose InferenceServices (with a kubemind.io/rollout-policy annotation) it rolls out."""

    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    """Prometheus the gates query, unless the policy names its own."""

    tick_seconds: float = Field(default=1.0, gt=0)
    """How often the long-running loop looks at every managed InferenceService; each rollout
    still runs its analysis at its policy's interval."""

    registry_tags: bool = True
    """Tag the MLflow version being rolled out (from the kubemind.io/model-name and
    model-version annotations `kubemind models pin` writes) with its rollout state."""
