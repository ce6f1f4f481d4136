"""Component settings: one pydantic-settings class per component.

Each component subclasses `ComponentSettings`, picks an env prefix, and documents every field
with an attribute docstring. `parse_settings` turns those fields into CLI flags layered on top
of KServe's own argument parser, so a container spec written for KServe (`--model_name`,
`--http_port`, ...) keeps working. Parsing happens only when `main()` calls `parse_settings`;
nothing here reads argv or the environment at import time.

Precedence: command-line flag > environment variable > field default.
"""

from __future__ import annotations

import argparse
import copy
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubemind.errors import InvalidSettings

DEFAULT_PROPAGATED_HEADERS = (
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
)


class ComponentSettings(BaseSettings):
    """Settings every kubemind server component shares."""

    model_config = SettingsConfigDict(
        env_prefix="KUBEMIND_",
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    model_name: str = "model"
    """Name of the model on the endpoint path (/v2/models/{model_name})."""

    server_name: str = "kubemind"
    """The `name` in server metadata (GET /v2, ServerMetadata). Clients written for Triton, its
    own example clients among them, check for "triton"."""

    host: str = "0.0.0.0"
    """Address both the REST and the gRPC listener bind; 127.0.0.1 keeps a local run private."""

    http_port: int = Field(default=8080, ge=0, le=65535)
    """REST listener port (0 picks a free port)."""

    grpc_port: int = Field(default=8081, ge=0, le=65535)
    """gRPC listener port (0 picks a free port)."""

    enable_grpc: bool = True
    """Serve the v2 gRPC protocol next to REST."""

    max_request_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    """Largest request body accepted, in bytes; larger bodies get 413 (gRPC RESOURCE_EXHAUSTED)."""

    propagate_headers: list[str] = Field(default_factory=lambda: list(DEFAULT_PROPAGATED_HEADERS))
    """Request headers (lower-case) forwarded to downstream hops and echoed in logs: trace context."""

    log_requests: bool = True
    """Emit one JSON log line per request."""

    grace_period_seconds: float = Field(default=10.0, ge=0)
    """Seconds in-flight requests get to finish after SIGTERM."""

    request_timeout_seconds: float = Field(default=60.0, gt=0)
    """Deadline of one request on every route (a stream's whole duration included); past it the
    client gets 504 / DEADLINE_EXCEEDED."""

    stream_idle_timeout_seconds: float = Field(default=120.0, gt=0)
    """Longest wait between two chunks of a streamed reply before it ends with a timeout error."""

    header_read_timeout_seconds: float = Field(default=30.0, gt=0)
    """Longest wait for a REST request's line and headers once its first byte came; past it the
    client gets 408 and the connection is closed (slow-header clients are not held forever)."""

    body_read_timeout_seconds: float = Field(default=60.0, gt=0)
    """Longest wait for a REST request's whole body once its headers came; past it 408."""

    failure_check_seconds: float = Field(default=2.0, gt=0)
    """How often the server asks its models whether their engine died (then it exits non-zero,
    so Kubernetes or `kubemind up` restarts it)."""

    executor_workers: int = Field(default=8, gt=0)
    """Threads of the server's default executor (tokenizing, decoding, CPU-bound model work)."""

    # -- the payload logger: KServe's InferenceService `logger` spec, under the names of the flags
    # KServe's agent takes (--log-url, --log-mode, --source-uri, --inference-service, ...).
    log_url: str = ""
    """Where request/response CloudEvents go (the logger spec's `url`): http(s)://... posts each
    event in binary mode; kafka://host:port/topic produces them to a Kafka topic. Empty: off."""

    log_mode: str = Field(default="all", pattern="^(all|request|response)$")
    """The logger spec's `mode`: log requests, responses, or both."""

    log_sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of requests logged (a request and its response are sampled together)."""

    log_queue_size: int = Field(default=10000, gt=0)
    """Events held for the sink at most; past it new events are dropped and counted, so a slow
    sink never slows requests."""

    log_batch_size: int = Field(default=64, gt=0)
    """Events sent to the sink at once (HTTP: concurrent posts; Kafka: one produce batch)."""

    log_timeout_seconds: float = Field(default=5.0, gt=0)
    """Deadline of one delivery to the sink; an event past it is dropped and counted."""

    source_uri: str = ""
    """The events' `source` (Ce-Source); empty: this server's own URL."""

    inference_service: str = ""
    """The InferenceService name on the events (Ce-Inferenceservicename); empty: the model name."""

    namespace: str = ""
    """The namespace on the events (Ce-Namespace)."""

    component: str = "predictor"
    """The component on the events (Ce-Component: predictor, transformer, explainer)."""

    endpoint: str = ""
    """The endpoint on the events (Ce-Endpoint: default or canary)."""
    revision: str = Field(default="", validation_alias=AliasChoices("revision", "K_REVISION"))
    """The revision this replica belongs to, a label on the request metrics so release gates
    can compare a canary with its primary. Knative sets K_REVISION in every pod; `kubemind up`
    sets it per revision."""


SettingsT = TypeVar("SettingsT", bound=ComponentSettings)
AnySettingsT = TypeVar("AnySettingsT", bound=BaseSettings)


def _flag_type(annotation: Any) -> tuple[Any, dict[str, Any]]:
    """argparse `type` and extra kwargs for a field annotation; pydantic does the real coercion."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _flag_type(args[0]) if len(args) == 1 else (str, {})
    if origin in (list, tuple, set, Sequence):
        # Comma-separated on the command line: --propagate_headers a,b,c
        return (lambda value: [item.strip() for item in value.split(",") if item.strip()]), {}
    return str, {}


def build_parser(settings_cls: type[ComponentSettings], prog: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with KServe's flags plus one flag per settings field.

    Fields shadow KServe flags of the same name, so `--http_port` means the kubemind setting.
    Defaults are suppressed so that only flags actually given override
    the environment.
    """
    from kserve.model_server import parser as kserve_parser  # imported lazily: kserve is heavy

    parser = argparse.ArgumentParser(
        prog=prog,
        description=(settings_cls.__doc__ or "").strip(),
        argument_default=argparse.SUPPRESS,
    )
    kserve_group = parser.add_argument_group("KServe model-server flags (accepted for compatibility)")
    for action in kserve_parser._actions:
        if action.dest in settings_cls.model_fields or not action.option_strings:
            continue
        # Copies, so the shared KServe parser is never mutated; defaults suppressed so only
        # flags actually given show up.
        kserve_action = copy.copy(action)
        kserve_action.default = argparse.SUPPRESS
        kserve_group._add_action(kserve_action)
    add_settings_flags(parser, settings_cls)
    return parser


def add_settings_flags(parser: argparse.ArgumentParser, settings_cls: type[BaseSettings]) -> None:
    """One flag per settings field (defaults suppressed: only flags given override the
    environment); also for CLI subcommands whose settings are not a server's."""
    group = parser.add_argument_group(f"{settings_cls.__name__} (env prefix {settings_cls.model_config.get('env_prefix', '')})")
    for name, field in settings_cls.model_fields.items():
        flag_type, extra = _flag_type(field.annotation)
        default = field.get_default(call_default_factory=True)
        group.add_argument(
            f"--{name}",
            dest=name,
            type=flag_type,
            default=argparse.SUPPRESS,
            help=f"{field.description or ''} (default: {default!r})",
            **extra,
        )


def parse_settings(
    settings_cls: type[SettingsT], argv: Sequence[str] | None = None, prog: str | None = None
) -> SettingsT:
    """Parse argv (flags) and the environment into `settings_cls`.

    Unknown flags are an error unless KServe's parser knows them (KServe-only flags such as
    `--workers` are accepted and ignored). Invalid values raise `InvalidSettings` naming the
    flag.
    """
    parser = build_parser(settings_cls, prog=prog)
    namespace = parser.parse_args(list(argv) if argv is not None else None)
    given = {k: v for k, v in vars(namespace).items() if k in settings_cls.model_fields}
    return settings_from_values(settings_cls, given)


def parse_flags(settings_cls: type[AnySettingsT], argv: Sequence[str] | None = None, prog: str | None = None,
                description: str | None = None) -> AnySettingsT:
    """Parse argv into settings that are not a server's (no KServe flags): one flag per field,
    the environment for the rest; unknown flags exit as argparse does, bad values raise
    InvalidSettings naming the flag."""
    parser = argparse.ArgumentParser(prog=prog, description=description, argument_default=argparse.SUPPRESS)
    add_settings_flags(parser, settings_cls)
    return settings_from_values(settings_cls, vars(parser.parse_args(list(argv) if argv is not None else None)))


def settings_from_values(settings_cls: type[AnySettingsT], values: dict[str, Any]) -> AnySettingsT:
    """Build settings from already-parsed values, turning pydantic errors into InvalidSettings."""
    try:
        return settings_cls(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidSettings(f"invalid settings for {settings_cls.__name__}: {problems}") from exc
