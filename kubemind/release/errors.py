"""Why the release controller holds: each is a KubemindError, so the CLI prints one line."""

from __future__ import annotations

from kubemind.errors import BackendUnavailable, InvalidInput


class PolicyRejected(InvalidInput):
    """A RolloutPolicy that its schema or its gates refuse; `problems` are (field path, message)."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])

    @classmethod
    def of(cls, problems: list[tuple[str, str]]) -> PolicyRejected:
        return cls("; ".join(f"{path}: {message}" for path, message in problems), problems)


class PrometheusUnavailable(BackendUnavailable):
    """Prometheus cannot be reached or does not answer a query."""


class KubernetesApiError(BackendUnavailable):
    """The Kubernetes API server refused or failed a request (`code`: its HTTP status, 0 when
    it could not be reached)."""

    def __init__(self, message: str, code: int = 0):
        super().__init__(message)
        self.code = code
