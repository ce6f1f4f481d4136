"""The tamper-evident audit log of administrative actions (register, alias move, pin, rollout
steps, promote, rollback, pause/resume, manual overrides).

`audit_log()` is the one entry point: it returns the sink the settings name (a JSON-lines file
under $KUBEMIND_HOME/audit locally, Postgres on a cluster); `record()` appends one action.
"""

from kubemind.audit.log import AuditLog, AuditRecord, VerifyResult, audit_log, record

__all__ = ["AuditLog", "AuditRecord", "VerifyResult", "audit_log", "record"]
