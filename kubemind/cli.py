"""The `kubemind` console script.

Each subcommand lives in its own module, exposing `register(subparsers)` which adds its parser
and sets `func` (called with the parsed namespace, returns an exit code). Modules are imported
only when listed here is needed, so `kubemind --help` stays fast and a missing optional extra
breaks only its own subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from kubemind import __version__

# subcommand -> (module exposing register() [or module:function], one-line help for `kubemind --help`)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("kubemind.local.serve", "run kubemind's services on 127.0.0.1 on embedded defaults"),
    "up": ("kubemind.local.up.cli:register_up", "run an overlay's InferenceServices here, behind nginx"),
    "down": ("kubemind.local.up.cli:register_down", "stop what `kubemind up` started"),
    "status": ("kubemind.local.up.cli:register_status", "what `kubemind up` runs: revisions, traffic, replicas"),
    "models": ("kubemind_registry.cli", "register, resolve and pin models in the MLflow registry"),
    "validate": ("kubemind.manifests.validate_cli", "validate kustomize overlays and manifests"),
    "size": ("kubemind.manifests.size_cli", "memory requests and limits for a model"),
    "jobs": ("kubemind_workers.cli", "async jobs: verify a webhook signature"),
    "observability": ("kubemind.observability.cli", "generate SLO alert rules, PrometheusRules and dashboards"),
    "drift": ("kubemind.drift.cli", "drift reports: reference vs current per feature, as HTML"),
    "rollout": ("kubemind.release.cli", "release control: run, status, pause, resume, promote, abort a rollout"),
    "audit": ("kubemind.audit.cli", "the tamper-evident audit log: verify its chain, show who did what"),
    "rag": ("kubemind_transformers.rag.cli", "retrieval-augmented generation: build a Milvus index of a corpus"),
    "features": ("kubemind_transformers.rag.features_cli", "the Feast feature repository: apply, materialize"),
}


def add_command_group(subparsers: Any, name: str, help_text: str, dest: str) -> tuple[argparse.ArgumentParser, Any]:
    """A subcommand that holds commands of its own (`kubemind models register ...`): its parser,
    which prints its help and exits 2 when no command is given, and the subparsers to add to."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text, description=help_text)

    def usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)
    return parser, parser.add_subparsers(dest=dest, metavar="COMMAND")


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubemind", description="KServe/Knative model serving: predictors, registry, manifests."
    )
    parser.add_argument("--version", action="version", version=f"kubemind {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen subcommand's module is imported; the rest are listed by name and help.
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if name == chosen:
            module_path, _, function = module_name.partition(":")
            module = importlib.import_module(module_path)
            getattr(module, function or "register")(subparsers, name, help_text)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args, rest = parser.parse_known_args(args_list)
    if args.command is None or not hasattr(args, "func"):
        parser.print_help()
        return 0 if args.command is None else 2
    if rest and not getattr(args, "accepts_extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.extra_args = rest
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
