"""One JSON record per administrative action, each carrying the hash of the one before.

A record is stored as its canonical JSON (sorted keys, no spaces) with `hash` = sha256 of the
canonical JSON of every other field, `prev` = the previous record's hash (64 zeros for the
first) and `seq` counting from 1. Changing a record breaks its own hash; deleting or reordering
records breaks `seq` and `prev`; deleting the last records is caught by the head (the last
`seq` and `hash`, kept beside the log). `verify` names the first record that is wrong.

This is tamper-evidence, not tamper-proofing: whoever can rewrite the whole file and its head
can forge a consistent history; on a cluster the Postgres sink sits behind its own credentials.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from kubemind.audit.actor import current_actor
from kubemind.audit.settings import AuditSettings

GENESIS = "0" * 64


def canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"}).encode()).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    """What an administrative action did, before it is chained."""

    action: str
    """Dotted verb: models.register, models.alias, models.pin, rollout.step, rollout.promote, ..."""
    object: dict[str, Any]
    """{"kind", "name", "namespace"?}: what the action changed."""
    model: str | None = None
    version: str | None = None
    before: Any = None
    after: Any = None
    reason: Any = None
    """Why: the gate values that decided a rollout step, or the operator's note."""
    actor: dict[str, Any] | None = None
    request_id: str | None = None

    def fields(self, settings: AuditSettings) -> dict[str, Any]:
        return {
            "time": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "request_id": self.request_id or uuid.uuid4().hex,
            "actor": self.actor or current_actor(settings.actor),
            "action": self.action,
            "object": self.object,
            "model": self.model,
            "version": self.version,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
        }


def chain(fields: dict[str, Any], seq: int, prev: str) -> dict[str, Any]:
    record = {**fields, "seq": seq, "prev": prev}
    record["hash"] = record_hash(record)
    return record


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    problem: str | None = None
    seq: int | None = None
    """The `seq` (or, for a line that no longer parses, the line number) of the first bad record."""


def verify_lines(lines: Iterable[str], head: tuple[int, str] | None = None, where: str = "line") -> VerifyResult:
    """Check a log's records in stored order; `head` is the last (seq, hash) the writer noted."""
    parsed: list[tuple[int, dict[str, Any] | None]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            loaded = json.loads(line)
        except ValueError:
            loaded = None
        parsed.append((number, loaded if isinstance(loaded, dict) else None))
    prev, expected = GENESIS, 1
    seqs = [r.get("seq") for _, r in parsed if r is not None]
    for index, (number, record) in enumerate(parsed):
        if record is None:
            return VerifyResult(False, index, f"{where} {number}: not a JSON record (modified)", number)
        seq = record.get("seq")
        if record.get("hash") != record_hash(record):
            return VerifyResult(False, index, f"record {seq} ({where} {number}): modified (its hash does not"
                                f" match its content)", seq if isinstance(seq, int) else number)
        if seq != expected:
            what = (f"reordered (record {expected} comes later)" if expected in seqs[index + 1:]
                    else f"record {expected} deleted")
            return VerifyResult(False, index, f"record {seq} ({where} {number}): expected record {expected}: {what}",
                                expected)
        if record.get("prev") != prev:
            return VerifyResult(False, index, f"record {seq} ({where} {number}): does not follow record"
                                f" {expected - 1} (prev hash differs: reordered, inserted or rewritten)", seq)
        prev, expected = record["hash"], expected + 1
    count = expected - 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq > count:
            missing = f"{count + 1}" if head_seq == count + 1 else f"{count + 1}..{head_seq}"
            return VerifyResult(False, count, f"record {missing} deleted (the log ends at record"
                                f" {count}, its head says {head_seq})", count + 1)
        if head_seq == count and count and head_hash != prev:
            return VerifyResult(False, count, f"record {count}: differs from the head's hash (rewritten)", count)
    return VerifyResult(True, count)


class AuditLog(Protocol):
    where: str

    def append(self, record: AuditRecord) -> dict[str, Any]: ...

    def lines(self) -> list[str]: ...

    def verify(self) -> VerifyResult: ...


class FileAuditLog:
    """JSON lines in one file, appended under an exclusive flock (one writer at a time, across
    processes); the head file beside it holds the last seq and hash."""

    def __init__(self, path: Path, settings: AuditSettings):
        self.path = path
        self.head_path = path.with_suffix(".head")
        self.settings = settings
        self.where = str(path)

    def append(self, record: AuditRecord) -> dict[str, Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                last = _last_line(handle)
                previous = json.loads(last) if last else None
                seq = int(previous["seq"]) + 1 if previous else 1
                chained = chain(record.fields(self.settings), seq, previous["hash"] if previous else GENESIS)
                handle.seek(0, os.SEEK_END)
                handle.write(canonical(chained).encode() + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
                partial = self.head_path.with_suffix(".head.partial")
                partial.write_text(canonical({"seq": seq, "hash": chained["hash"]}))
                partial.replace(self.head_path)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return chained

    def lines(self) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def head(self) -> tuple[int, str] | None:
        try:
            loaded = json.loads(self.head_path.read_text())
            return int(loaded["seq"]), str(loaded["hash"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def verify(self) -> VerifyResult:
        return verify_lines(self.lines(), self.head())


def _last_line(handle: Any) -> bytes | None:
    """The last non-empty line of a file opened for reading, read from the end."""
    handle.seek(0, os.SEEK_END)
    end = handle.tell()
    chunk, data = 4096, b""
    position = end
    while position > 0:
        step = min(chunk, position)
        position -= step
        handle.seek(position)
        data = handle.read(step) + data
        stripped = data.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
    stripped = data.rstrip(b"\n")
    return stripped or None


def audit_log(settings: AuditSettings | None = None, home: Path | None = None) -> AuditLog:
    """The log the settings name: Postgres when a DSN is set, else the file under `home`."""
    settings = settings or AuditSettings()
    if home is not None:
        settings = settings.model_copy(update={"home": home})
    if settings.postgres_dsn:
        from kubemind.audit.postgres import PostgresAuditLog

        return PostgresAuditLog(settings.postgres_dsn, settings)
    return FileAuditLog(settings.file, settings)


def record(
    action: str,
    obj: dict[str, Any],
    *,
    home: Path | None = None,
    log: AuditLog | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Append one action to the configured log; returns the chained record."""
    return (log or audit_log(home=home)).append(AuditRecord(action, obj, **fields))


def records(log: AuditLog) -> Iterator[dict[str, Any]]:
    for line in log.lines():
        try:
            loaded = json.loads(line)
        except ValueError:
            continue
        if isinstance(loaded, dict):
            yield loaded
