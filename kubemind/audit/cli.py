"""`kubemind audit verify | show`: check the audit log's hash chain; who did what, when."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kubemind.audit.log import AuditLog, audit_log, records
from kubemind.audit.settings import AuditSettings
from kubemind.cli import add_command_group


def register(subparsers: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser, commands = add_command_group(subparsers, name, help_text, "audit_command")
    for command, helptext, func in (
        ("verify", "check the hash chain; name the first modified, reordered or deleted record", verify),
        ("show", "the records, oldest first: who did what to which model and version, when", show),
    ):
        sub = commands.add_parser(command, help=helptext, description=helptext)
        sub.add_argument("--postgres", metavar="DSN", help="the Postgres log (default: $KUBEMIND_AUDIT_POSTGRES_DSN,"
                         " else the file under $KUBEMIND_HOME/audit)")
        if command == "show":
            sub.add_argument("--model", help="only the records about this model (or InferenceService)")
            sub.add_argument("--format", choices=("text", "json"), default="text")
        sub.set_defaults(func=func)
    return parser


def _log(args: argparse.Namespace) -> AuditLog:
    settings = AuditSettings()
    if args.postgres:
        settings = settings.model_copy(update={"postgres_dsn": args.postgres})
    return audit_log(settings)


def verify(args: argparse.Namespace) -> int:
    log = _log(args)
    result = log.verify()
    if result.ok:
        print(f"audit log {log.where}: {result.records} record(s), chain intact")
        return 0
    print(f"audit log {log.where}: TAMPERED: {result.problem}", file=sys.stderr)
    return 1


def show(args: argparse.Namespace) -> int:
    chosen = [r for r in records(_log(args))
              if not args.model or args.model in (r.get("model"), (r.get("object") or {}).get("name"))]
    if args.format == "json":
        print(json.dumps(chosen, indent=2))
        return 0
    for r in chosen:
        actor = r.get("actor") or {}
        obj = r.get("object") or {}
        change = "" if r.get("before") is None and r.get("after") is None else \
            f" {json.dumps(r.get('before'))} -> {json.dumps(r.get('after'))}"
        why = f" because {json.dumps(r['reason'])}" if r.get("reason") else ""
        print(f"{r.get('time')} #{r.get('seq')} {actor.get('via', '?')}:{actor.get('name', '?')} {r.get('action')}"
              f" {obj.get('kind', '?')}/{obj.get('name', '?')}"
              f"{' v' + str(r['version']) if r.get('version') else ''}{change}{why} (request {r.get('request_id')})")
    if not chosen:
        print("no audit records" + (f" for {args.model}" if args.model else ""))
    return 0
