"""`kubemind observability generate`: SLO rules, PrometheusRules and dashboards from the specs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kubemind.observability.generate import SLO_DIR, stale_files, write_files


def register(subparsers: Any, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=(
            f"Regenerate the Prometheus rule files, the PrometheusRule manifests and the Grafana "
            f"dashboards from the SLO specs in {SLO_DIR}/ and the metrics the code exports."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    generate = actions.add_parser("generate", help="write the generated files (or --check them)")
    generate.add_argument("--root", type=Path, default=Path("."), help="the checkout (default: .)")
    generate.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a generated file is stale"
    )
    generate.set_defaults(func=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    try:
        if args.check:
            stale = stale_files(args.root)
            for path in stale:
                print(f"stale: {path}")
            return 1 if stale else 0
        for path in write_files(args.root):
            print(f"wrote {path}")
    except (OSError, ValueError, ValidationError) as exc:
        print(f"kubemind observability: error: {exc}", file=sys.stderr)
        return 2
    return 0
