"""`kubemind rollout run|status|pause|resume|promote|abort|rehearse NAME`."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Any

from kubemind.cli import add_command_group
from kubemind.errors import KubemindError
from kubemind.release.errors import KubernetesApiError

CONFLICT_RETRIES = 5

COMMANDS = {
    "run": "run the rollout of NAME in the foreground until it is promoted or rolled back",
    "status": "the rollout state of NAME: phase, weight, failures, the last gate values and why",
    "pause": "hold NAME's rollout at its weight (audited)",
    "resume": "continue a paused rollout (audited)",
    "promote": "manual override: promote NAME's candidate now (audited)",
    "abort": "manual override: roll NAME back to its primary now (audited)",
    "rehearse": "print the commands that rehearse a canary of NAME under a running `kubemind up`",
}


def register(subparsers: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser, commands = add_command_group(subparsers, name, help_text, "rollout_command")
    for command, text in COMMANDS.items():
        sub = commands.add_parser(command, help=text, description=text)
        sub.add_argument("name", help="the InferenceService")
        sub.add_argument("--kubeconfig", help="default: $KUBEMIND_RELEASE_KUBECONFIG, $KUBECONFIG, ~/.kube/config")
        sub.add_argument("--context")
        sub.add_argument("-n", "--namespace", help="default: $KUBEMIND_RELEASE_NAMESPACE or kubemind")
        sub.add_argument("--prometheus_url", help="default: $KUBEMIND_RELEASE_PROMETHEUS_URL")
        if command in ("promote", "abort", "pause"):
            sub.add_argument("--reason", default="", help="why, for the audit log")
        sub.set_defaults(func=_run(command))
    return parser


def _run(command: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        from kubemind.release.controller import Controller
        from kubemind.release.settings import ReleaseSettings

        overrides = {k: getattr(args, k) for k in ("kubeconfig", "context", "namespace", "prometheus_url")
                     if getattr(args, k, None)}
        if command == "rehearse" and "kubeconfig" not in overrides:
            from kubemind.local.up.state import kubeconfig_path

            overrides["kubeconfig"] = str(kubeconfig_path())  # the running `kubemind up`'s API
        try:
            controller = Controller(ReleaseSettings(**overrides))
        except KubemindError as exc:
            print(f"kubemind rollout: error: {exc}", file=sys.stderr)
            return 1
        try:
            for attempt in range(CONFLICT_RETRIES):
                try:
                    return _command(controller, command, args)
                except KubernetesApiError as exc:
                    # 409: the controller wrote in between; decide again from the new version.
                    if exc.code != 409 or attempt == CONFLICT_RETRIES - 1:
                        raise
            return 1
        except KubemindError as exc:
            print(f"kubemind rollout: error: {exc}", file=sys.stderr)
            return 1
        finally:
            controller.close()

    return run


def _command(controller: Any, command: str, args: argparse.Namespace) -> int:
    from kubemind.release.controller import DONE, RolloutState, revisions

    namespace = controller.settings.namespace
    if command == "rehearse":
        from kubemind.release.rehearse import PROMETHEUS_URL, rehearsal

        isvc = controller.api.get_isvc(namespace, args.name)
        print(rehearsal(args.name, namespace, isvc, prometheus_url=args.prometheus_url or PROMETHEUS_URL))
        return 0
    if command == "run":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        controller.run(stop, [args.name], until_done=True)
        command = "status"
    isvc = controller.api.get_isvc(namespace, args.name)
    state = RolloutState.from_annotations(isvc["metadata"].get("annotations") or {})
    if command == "status":
        primary, candidate = revisions(isvc)
        print(json.dumps({"name": args.name, "primary": primary, "candidate": candidate,
                          "state": None if state is None else state.__dict__}, indent=2))
        return 0
    if command in ("pause", "resume"):
        controller.set_paused(args.name, command == "pause")
        print(f"{args.name}: {'paused' if command == 'pause' else 'resumed'}")
        return 0
    primary, candidate = revisions(isvc)
    if state is None and candidate is None:
        print(f"kubemind rollout: {args.name} has no candidate revision to {command}", file=sys.stderr)
        return 1
    if state is None or state.candidate != candidate:
        state = RolloutState(candidate or "", primary, "canary")
    if state.phase in DONE:
        print(f"kubemind rollout: {args.name}'s candidate {state.candidate} is already {state.phase}", file=sys.stderr)
        return 1
    why = f"manual override by {controller.actor['name']}" + (f": {args.reason}" if args.reason else "")
    if command == "promote":
        controller.promote(isvc, state, why)
    else:
        controller.rollback(isvc, state, why)
    print(f"{args.name}: {state.reason}")
    return 0
