"""`kubemind models register | alias | resolve | pin | unpin | demo`.

`kubemind/cli.py` imports this module only when `kubemind models ...` is run, and calls
`register(subparsers, name, help_text)`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kubemind.cli import add_command_group
from kubemind.errors import KubemindError
from kubemind_registry.signatures import FLAVORS


def register(subparsers: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser, commands = add_command_group(subparsers, name, help_text, "models_command")

    reg = commands.add_parser(
        "register", help="upload a model folder with its sha256 manifest and v2 signature"
    )
    reg.add_argument("name", help="registered model name")
    reg.add_argument("path", type=Path, help="the model folder")
    reg.add_argument("--flavor", required=True, choices=FLAVORS)
    reg.add_argument("--alias", help="point this alias (e.g. champion) at the new version")
    reg.add_argument("--signature", type=Path, help="v2 signature JSON, instead of inferring it")
    reg.add_argument("--task", help="task tag (default per flavor)")
    reg.add_argument("--owner", help="owner tag (default: the current user)")
    reg.add_argument("--reference", type=Path, metavar="DATA",
                     help="reference payloads (JSON Lines of v2/OpenAI requests and responses): their "
                          "drift profile is stored with the version, for the drift service")  # fmt: skip
    reg.set_defaults(func=_run(_register))

    alias = commands.add_parser("alias", help="point an alias at a version: NAME ALIAS VERSION")
    alias.add_argument("name")
    alias.add_argument("alias")
    alias.add_argument("version")
    alias.set_defaults(func=_run(_alias))

    res = commands.add_parser("resolve", help="print the immutable version a models:/ URI names")
    res.add_argument("uri", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    res.set_defaults(func=_run(_resolve))

    pin = commands.add_parser(
        "pin", help="write inferenceservices/overlays/ENV/pins/model-pins.yaml (or --check it)",
        description="Pin registered artifacts of the InferenceServices under inferenceservices/base"
        " to the immutable version their alias names now, in the overlay ENV.",
        epilog="A target is ISVC or ISVC/COMPONENT. COMPONENT is predictor, transformer or explainer:"
        " that component's storageUri, or, for a custom container, its STORAGE_URI env var (what"
        " KServe's storage initializer reads). ISVC alone is the InferenceService's storageUri, or its"
        " only artifact when that is a container's STORAGE_URI. Example, both artifacts of rag:"
        " --model rag=models:/smollm2-chat@champion --model rag/transformer=models:/docs-index@champion."
        " A target that is missing or ambiguous is an error listing the InferenceService's targets.",
    )
    pin.add_argument("--env", required=True, help="overlay name: dev, staging, prod, ...")
    pin.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="ISVC[/COMPONENT]=URI",
        help="the target (see below) and the models:/NAME@ALIAS it follows (repeatable);"
        " without it, the refs already in the pins file are refreshed",
    )
    root_help = ("the checkout (default: the nearest folder at or above the current one that has"
                 " inferenceservices/overlays/)")
    pin.add_argument("--root", type=Path, default=None, help=root_help)
    pin.add_argument("--check", action="store_true", help="fail if a pin is stale; write nothing")
    pin.set_defaults(func=_run(_pin))

    unpin = commands.add_parser(
        "unpin", help="remove pins from inferenceservices/overlays/ENV/pins/",
        description="Remove pins `kubemind models pin` wrote into the overlay ENV; the other pins stay"
        " at the versions they have (the registry is not asked). When the last pin goes, the overlay"
        " renders exactly as it did before any pin.",
        epilog="A target is ISVC/COMPONENT as `pin` prints it (rag/transformer), or ISVC when the"
        " InferenceService has one pin. A target that is not pinned is an error listing the pins, and"
        " nothing is written.",
    )
    unpin.add_argument("--env", required=True, help="overlay name: dev, staging, prod, ...")
    unpin.add_argument("targets", nargs="+", metavar="ISVC[/COMPONENT]", help="the pins to remove")
    unpin.add_argument("--root", type=Path, default=None, help=root_help)
    unpin.set_defaults(func=_run(_unpin))

    demo = commands.add_parser(
        "demo", help="register the models the local overlay serves (SmolLM2, EfficientNet-Lite0, MiniLM,"
        " the docs index) as version 1 each, unless registered already")
    demo.set_defaults(func=_run(_demo))
    return parser


def _demo(args: argparse.Namespace) -> int:
    from kubemind.local.demo_models import register_demo_models

    register_demo_models(_registry(), report=lambda line: print(line, flush=True))
    return 0


def _run(command: Any) -> Any:
    """Turn kubemind errors into one line on stderr and exit code 1, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(command(args))
        except KubemindError as exc:
            print(f"kubemind models: error: {exc}", file=sys.stderr)
            return 1

    return run


def _registry() -> Any:
    # Imported here: `kubemind models --help` should not pay for importing MLflow.
    from kubemind_registry.mlflow_store import MlflowRegistry
    from kubemind_registry.settings import RegistrySettings

    return MlflowRegistry(RegistrySettings())


def _print_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2))


def _register(args: argparse.Namespace) -> int:
    from kubemind_registry.register import register_model
    from kubemind_registry.signatures import load_signature_file

    signature = load_signature_file(args.signature) if args.signature else None
    ref = register_model(
        _registry(), args.name, args.path, args.flavor,
        alias=args.alias, signature=signature, task=args.task, owner=args.owner, reference=args.reference,
    )
    _print_json(ref.to_dict())
    return 0


def _alias(args: argparse.Namespace) -> int:
    from kubemind_registry.register import set_alias

    _print_json(set_alias(_registry(), args.name, args.alias, args.version).to_dict())
    return 0


def _resolve(args: argparse.Namespace) -> int:
    from kubemind_registry.resolve import resolve

    _print_json(resolve(_registry(), args.uri).to_dict())
    return 0


def _pin(args: argparse.Namespace) -> int:
    from kubemind_registry.pin import (
        check_overlay,
        check_pins,
        find_root,
        has_pins,
        parse_model_flags,
        write_pins,
    )

    requested = parse_model_flags(args.model)
    root = find_root(args.root if args.root is not None else Path.cwd())
    if args.check:
        check_overlay(root, args.env)
        if not requested and not has_pins(root, args.env):
            # Nothing to be stale: a distinct, successful answer (CI checks only pinned overlays).
            print(f"no pins for {args.env} yet: nothing to check")
            return 0
        stale = check_pins(_registry(), root, args.env, requested)
        for line in stale:
            print(f"stale: {line}", file=sys.stderr)
        if stale:
            print(f"kubemind models: pins for {args.env} are stale; rerun `kubemind models pin"
                  f" --env {args.env}`", file=sys.stderr)
            return 1
        print(f"pins for {args.env} are up to date")
        return 0
    path, pins = write_pins(_registry(), root, args.env, requested)
    for pin in pins:
        print(f"{pin.target.name}: {pin.ref_uri} -> {pin.pinned_uri} ({pin.digest})")
    print(f"wrote {path}")
    return 0


def _unpin(args: argparse.Namespace) -> int:
    from kubemind_registry.pin import find_root, pins_path, remove_pins

    root = find_root(args.root if args.root is not None else Path.cwd())
    for name in remove_pins(root, args.env, args.targets, home=_registry().settings.home):
        print(f"{name}: unpinned")
    path = pins_path(root, args.env)
    print(f"wrote {path}" if path.exists() else f"no pins left for {args.env}: removed {path}")
    return 0
