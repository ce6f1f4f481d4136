"""Where the audit log is written, and who is acting."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AuditSettings(BaseSettings):
    """Settings of the audit log (env prefix KUBEMIND_AUDIT_)."""

    model_config = SettingsConfigDict(
        env_prefix="KUBEMIND_AUDIT_", extra="ignore", use_attribute_docstrings=True, populate_by_name=True
    )

    home: Path = Field(
        default_factory=lambda: Path.home() / ".kubemind", validation_alias=AliasChoices("KUBEMIND_HOME")
    )
    """kubemind's local state folder; the file log is `audit/audit.jsonl` under it."""

    postgres_dsn: str | None = None
    """postgresql://user@host:port/db: write the log to Postgres (on a cluster) instead of the file."""

    table: str = Field(default="kubemind_audit", pattern=r"^[a-z_][a-z0-9_]*$")
    """The Postgres table of the log."""

    actor: str | None = None
    """Who acts, when the caller knows better than kubeconfig and the OS (e.g. `jwt:SUBJECT`,
    set by a service that verified the caller's token)."""

    @property
    def file(self) -> Path:
        return self.home / "audit" / "audit.jsonl"
