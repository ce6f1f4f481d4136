"""`kubemind validate PATH...`: offline stand-in for the API server's schema and admission checks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from kubemind.manifests.crd_catalog import default_crd_dir
from kubemind.manifests.references import Allowed, load_allow_list
from kubemind.manifests.rendering import KUSTOMIZE_TIMEOUT_SECONDS
from kubemind.manifests.reporting import format_json, format_text
from kubemind.manifests.validator import validate_paths


def register(subparsers: Any, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=(
            "Build each kustomize overlay under PATH (or read plain YAML files) and check every "
            "object against the CRD schemas, the built-in kinds' schemas and KServe/Knative admission "
            "rules. Prints file, object, field path and message per problem; exits 1 on any."
        ),
    )
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="kustomize folders, folders of YAML, or files",
    )
    parser.add_argument(
        "--crds",
        type=Path,
        default=None,
        help="folder of CustomResourceDefinitions (default: $KUBEMIND_CRDS, else the copy shipped"
        " in the package: KServe, Knative, Istio, prometheus-operator, KEDA)",
    )
    parser.add_argument(
        "--unchecked-kind",
        action="append",
        default=[],
        metavar="GROUP/KIND",
        help="accept objects of this kind without a schema check (no CRD for it); repeatable",
    )
    parser.add_argument(
        "--allow-ref",
        action="append",
        default=[],
        metavar="KIND/NAMESPACE/NAME",
        help="an object the manifests reference that lives outside them (e.g."
        " Secret/kubemind/postgres, serving.knative.dev/Service/*/cv-worker); repeatable",
    )
    parser.add_argument(
        "--allow-refs",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="YAML list of {kind, namespace, name, reason}: objects that live outside the"
        " manifests (installed with KServe, created by cert-manager, ...); repeatable",
    )
    parser.add_argument(
        "--kustomize-timeout",
        type=float,
        default=KUSTOMIZE_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"longest one kustomize build may take (remote resources) (default {KUSTOMIZE_TIMEOUT_SECONDS:g})",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    crd_dir = args.crds if args.crds is not None else default_crd_dir()
    try:
        allowed = [Allowed.parse(text) for text in args.allow_ref]
        for file in args.allow_refs:
            allowed.extend(load_allow_list(file))
    except (OSError, ValueError, UnicodeDecodeError, yaml.YAMLError) as exc:
        print(f"kubemind validate: error: {exc}", file=sys.stderr)
        return 2
    result = validate_paths(args.paths, crd_dir, frozenset(args.unchecked_kind), allowed, args.kustomize_timeout)
    formatter = format_json if args.format == "json" else format_text
    print(formatter(result.problems, len(result.objects)))
    return 0 if result.ok else 1
