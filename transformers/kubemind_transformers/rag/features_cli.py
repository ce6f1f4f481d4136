"""`kubemind features apply|materialize`: Feast's `apply` and `materialize-incremental` on the
project's feature repository (features/), with the online store given as a flag.

    kubemind features apply                                  # SQLite online store in features/data
    kubemind features materialize --online_store redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kubemind.errors import KubemindError


def register(subparsers: Any, name: str, help_text: str) -> None:
    from kubemind_transformers.rag.features import PROJECT, repository_root

    parser = subparsers.add_parser(name, help=help_text, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="features_command", metavar="COMMAND", required=True)
    for command, help_line in (("apply", "register the entities and feature views (writes the parquet sources if missing)"),
                               ("materialize", "load the offline rows up to now into the online store")):  # fmt: skip
        sub = commands.add_parser(command, help=help_line)
        sub.add_argument("--repo", type=Path, default=repository_root(), help="the Feast repository (default: features/)")
        sub.add_argument("--online_store", default="", help="sqlite:///PATH or redis://HOST:PORT[/DB] (default: the repository's SQLite)")
        sub.add_argument("--project", default=PROJECT, help="Feast project (keys in a shared Redis are per project)")
        sub.add_argument("--registry", default="", help="registry file (default: data/registry.db in the repository)")
        sub.set_defaults(func=run, accepts_extra_args=False)


def run(args: argparse.Namespace) -> int:
    from kubemind_transformers.rag.features import FeatureRepo

    repo = FeatureRepo(args.repo.resolve(), args.online_store, args.project, args.registry)
    try:
        if args.features_command == "apply":
            names = repo.apply()
            print(f"applied {', '.join(names)} to project {repo.project} (registry {repo.registry_path()})")
        else:
            repo.materialize()
            print(f"materialized project {repo.project} into {repo.online_store or 'the SQLite online store'}")
    except KubemindError as exc:
        print(f"kubemind features: {exc.message}", file=sys.stderr)
        return 2
    return 0
