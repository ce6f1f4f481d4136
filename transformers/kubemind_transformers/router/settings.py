"""Settings of the inference router (`python -m kubemind_transformers.router`)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from kubemind.settings import ComponentSettings


class RouterSettings(ComponentSettings):
    """Executes KServe InferenceGraphs: each graph is served as a model named after the graph."""

    model_config = SettingsConfigDict(
        env_prefix="KUBEMIND_ROUTER_",
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    model_name: str = "router"
    """Unused (each graph is served under its metadata.name); kept so KServe's flag parses."""

    graph: list[str] = Field(default_factory=lambda: ["/etc/kubemind/graph/inferencegraph.yaml"])
    """InferenceGraph YAML file(s), comma-separated; every InferenceGraph in them is served."""

    service_hosts: list[str] = Field(default_factory=list)
    """`service=host:port` overrides, comma-separated: where a step's serviceName is reached
    (a local run, or a service outside the mesh). Others go to service_host_template."""

    service_host_template: str = "{service}.{namespace}.svc.cluster.local:80"
    """Address of a step's service when service_hosts does not name it (`{service}`,
    `{namespace}`: the graph's). A step's serviceUrl, when given, wins."""

    step_timeout_seconds: float = Field(default=30.0, gt=0)
    """A step's deadline when neither its options nor the graph's routerTimeouts set one."""

    request_timeout_seconds: float = Field(default=120.0, gt=0)
    """Deadline of one request on every route; a graph's spec.timeout can only shorten it."""

    retry_budget: int = Field(default=1, ge=0)
    """Retries of a grpc-v2 step that answered UNAVAILABLE, within the step's deadline."""

    splitter_seed: int | None = None
    """Seed of the Splitter's weighted choice (tests); unset: a fresh random source."""

    @field_validator("service_hosts")
    @classmethod
    def _pairs(cls, value: list[str]) -> list[str]:
        for item in value:
            name, _, address = item.partition("=")
            if not name or not address:
                raise ValueError(f"{item!r}: expected service=host:port")
        return value

    def service_address(self, service: str, namespace: str) -> str:
        for item in self.service_hosts:
            name, _, address = item.partition("=")
            if name == service:
                return address
        return self.service_host_template.format(service=service, namespace=namespace)
