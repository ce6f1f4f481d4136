"""`kubemind features apply|materialize`: Feast's `apply` and `materialize-incremental` on the
project's feature repository (features/), with a feature_store.yaml (its own, or the cluster's)
and, for tests, overrides of its online store, registry and project.

    kubemind features apply                                  # features/feature_store.yaml: SQLite in features/data
    kubemind features materialize --online_store redis://127.0.0.1:6379/0
    kubemind features apply --config features/cluster/feature_store.yaml   # Postgres registry, Redis:
        # FEAST_REGISTRY_PATH and FEAST_ONLINE_STORE_CONNECTION_STRING from the environment
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kubemind.errors import KubemindError


def register(subparsers: Any, name: str, help_text: str) -> None:
    from kubemind_transformers.rag.features import repository_root

    parser = subparsers.add_parser(name, help=help_text, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="features_command", metavar="COMMAND", required=True)
    for command, help_line in (("apply", "register the entities and feature views (writes the parquet sources if missing)"),
                               ("materialize", "load the offline rows up to now into the online store "
                                               "(writes the parquet sources if missing)")):  # fmt: skip
        sub = commands.add_parser(command, help=help_line)
        sub.add_argument("--repo", type=Path, default=repository_root(), help="the Feast repository: definitions and sources (default: features/)")
        sub.add_argument("--config", type=Path, default=None,
                         help="the feature_store.yaml (default: REPO/feature_store.yaml; a cluster's: features/cluster/feature_store.yaml)")
        sub.add_argument("--online_store", default="", help="instead of the config's: sqlite:///PATH or redis://HOST:PORT[/DB]")
        sub.add_argument("--project", default="", help="instead of the config's project (keys in a shared Redis are per project)")
        sub.add_argument("--registry", default="", help="instead of the config's registry: a registry file")
        sub.set_defaults(func=run, accepts_extra_args=False)


def run(args: argparse.Namespace) -> int:
    from kubemind_transformers.rag.features import FeatureRepo

    config = str(args.config.resolve()) if args.config else ""
    repo = FeatureRepo(args.repo.resolve(), args.online_store, args.project, args.registry, config)
    try:
        project, registry, online_store = repo.describe()
        if args.features_command == "apply":
            names = repo.apply()
            print(f"applied {', '.join(names)} to project {project} (registry {registry})")
        else:
            repo.materialize()
            print(f"materialized project {project} into the {online_store} online store")
    except KubemindError as exc:
        print(f"kubemind features: {exc.message}", file=sys.stderr)
        return 2
    return 0
