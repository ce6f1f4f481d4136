"""`kubemind drift report MODEL`: the drift service's view of MODEL as an HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    commands = parser.add_subparsers(dest="drift_command", required=True)
    report = commands.add_parser("report", help="write an HTML report: reference vs current, per feature")
    report.add_argument("model", help="the model (its reference profile's name)")
    report.add_argument("--service_url", default="http://127.0.0.1:8080", help="the drift service (python -m kubemind.drift)")
    report.add_argument("--output", type=Path, help="the HTML file (default: drift-MODEL.html)")
    report.set_defaults(func=_report)
    return parser


def _report(args: argparse.Namespace) -> int:
    import httpx

    from kubemind.drift.report import render

    reply = httpx.get(f"{args.service_url.rstrip('/')}/v1/drift/{args.model}", timeout=30)
    if reply.status_code != 200:
        print(f"the drift service answered {reply.status_code}: {reply.text}")
        return 1
    output = args.output or Path(f"drift-{args.model}.html")
    output.write_text(render(reply.json()))
    print(output)
    return 0
