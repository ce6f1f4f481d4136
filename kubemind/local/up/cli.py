"""`kubemind up [OVERLAY]`, `kubemind down`, `kubemind status`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from kubemind.errors import KubemindError
from kubemind.local.up.state import all_pids, pid_alive, read_state, remove_state, running_up
from kubemind.manifests.references import Allowed, load_allow_list

UP_HELP = """Render a kustomize overlay (default: `local`, i.e. inferenceservices/overlays/local of this
checkout, or a folder), refuse it if `kubemind validate` would, and run each InferenceService
component as the process its container runs, minReplicas each, behind an nginx gateway on
127.0.0.1 (REST by /serving/NAMESPACE/NAME or Host NAME.NAMESPACE.localhost, gRPC by
:authority), with the canary split of canaryTrafficPercent. Edits to the overlay are applied
while it runs. Ctrl+C or `kubemind down` stops everything."""


def register_up(subparsers: Any, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=UP_HELP)
    parser.add_argument("overlay", nargs="?", default="local", help="overlay name or kustomize folder")
    parser.add_argument("--http_port", type=int, default=8080, help="gateway REST port (0: a free one)")
    parser.add_argument("--grpc_port", type=int, default=8081, help="gateway gRPC port (0: a free one)")
    parser.add_argument("--api_port", type=int, default=0,
                        help="port of the Kubernetes API on 127.0.0.1 (0: a free one); a kubeconfig for it is"
                        " written to $KUBEMIND_HOME/up/kubeconfig")
    parser.add_argument("--https_port", type=int, default=8443,
                        help="gateway HTTPS port, when an --istio Gateway has an HTTPS server (0: a free one)")
    parser.add_argument("--scale_to_zero_after", type=float, default=60.0,
                        help="seconds without a request before a minReplicas 0 revision is scaled back to zero")
    parser.add_argument("--watch_interval", type=float, default=2.0, help="seconds between re-renders")
    parser.add_argument("--cache_dir", type=Path, default=None,
                        help="node cache for models:/ URIs (default: $KUBEMIND_HOME, ~/.kubemind)")
    parser.add_argument("--allow-refs", dest="allow_refs", type=Path, action="append", default=[],
                        metavar="FILE", help="as for `kubemind validate`: objects living outside the overlay"
                        " (default: the checkout's external-objects.yaml)")
    parser.add_argument("--istio", type=Path, action="append", default=[], metavar="PATH",
                        help="Istio objects (a kustomize folder or YAML) whose gateway policies apply:"
                        " TLS of a Gateway, the local rate limit EnvoyFilter, VirtualService hosts and mirrors,"
                        " RequestAuthentication (JWT) and AuthorizationPolicy; repeatable")
    parser.add_argument("--jwks", action="append", default=[], metavar="URI=FILE",
                        help="a local JWKS file for a RequestAuthentication jwksUri (Istio's inline jwks needs"
                        " none); repeatable")
    parser.set_defaults(func=up)


def jwks_files(pairs: list[str]) -> dict[str, Path]:
    """--jwks URI=FILE pairs; each FILE must exist."""
    found = {}
    for pair in pairs:
        uri, sep, file = pair.rpartition("=")
        if not sep or not uri or not Path(file).is_file():
            raise ValueError(f"--jwks {pair}: want URI=FILE with an existing JWKS file")
        found[uri] = Path(file)
    return found


def register_down(subparsers: Any, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description="Stop what `kubemind up` started, by PID.")
    parser.set_defaults(func=down)


def register_status(subparsers: Any, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description="What `kubemind up` runs now.")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--watch", action="store_true", help="refresh every second until Ctrl+C")
    parser.set_defaults(func=status)


def up(args: argparse.Namespace) -> int:
    from kubemind.local.up.gateway import nginx_binary
    from kubemind.local.up.runner import Runner, format_problems
    from kubemind.local.up.specs import SpecsRejected, checkout_allow_list, find_overlay
    from kubemind.processes import PortInUse, check_port_free

    running = running_up()
    if running:
        print(f"kubemind up: already running (pid {running['pid']}); `kubemind down` stops it", file=sys.stderr)
        return 2
    try:
        allowed: list[Allowed] = []
        for file in args.allow_refs:
            allowed.extend(load_allow_list(file))
        overlay = find_overlay(args.overlay)
        default_refs = checkout_allow_list(overlay) if not args.allow_refs else None
        if default_refs:
            allowed.extend(load_allow_list(default_refs))
        nginx_binary()
        jwks = jwks_files(args.jwks)
        for port in (args.http_port, args.grpc_port, args.api_port):
            check_port_free(port)
    except PortInUse as exc:
        print(f"kubemind up: {exc}; pass --http_port 0 --grpc_port 0 for free ports", file=sys.stderr)
        return 2
    except (KubemindError, OSError, ValueError, yaml.YAMLError) as exc:
        print(f"kubemind up: error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    runner = Runner(overlay, args.http_port, args.grpc_port, args.cache_dir, allowed,
                    report=lambda line: print(line, flush=True), istio=args.istio, api_port=args.api_port,
                    scale_to_zero_after=args.scale_to_zero_after, https_port=args.https_port, jwks=jwks)
    try:
        print(f"kubemind up: {overlay}", flush=True)
        runner.load()
        print(f"kubemind up: gateway REST http://127.0.0.1:{runner.http_port}  gRPC 127.0.0.1:{runner.grpc_port}"
              f"  (nginx pid {runner.gateway.pid}); logs: {runner.home / 'logs'}", flush=True)
        if runner.certificate is not None:
            print(f"kubemind up: gateway HTTPS https://127.0.0.1:{runner.https_port} (certificate"
                  f" {runner.certificate[0]}: curl --cacert it)", flush=True)
        if runner.api is not None:
            print(f"kubemind up: Kubernetes API {runner.api.url}; kubeconfig {runner.kubeconfig}"
                  f" (kubectl --kubeconfig {runner.kubeconfig} get inferenceservices)", flush=True)
        runner.run(stop, args.watch_interval)
        return 0
    except SpecsRejected as exc:
        print(f"kubemind up: {overlay} is rejected; nothing started:\n{format_problems(exc)}", file=sys.stderr)
        return 1
    except KubemindError as exc:
        print(f"kubemind up: error: {exc}", file=sys.stderr)
        return 1
    finally:
        runner.stop()
        remove_state()


def down(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None:
        print("kubemind down: nothing is running")
        return 0
    pids = [pid for pid in all_pids(state) if pid and pid_alive(pid)]
    up_pid = int(state.get("pid", 0))
    if up_pid in pids:
        os.kill(up_pid, signal.SIGTERM)  # `up` stops its replicas and nginx itself
        _wait_gone([up_pid], 60.0)
    # Whatever outlived it (a SIGKILLed `up` whose children had not seen their signal yet).
    leftovers = [pid for pid in pids if pid_alive(pid)]
    for pid in leftovers:
        os.kill(pid, signal.SIGTERM)
    for pid in _wait_gone(leftovers, 20.0):
        os.kill(pid, signal.SIGKILL)
    remove_state()
    print(f"kubemind down: stopped {len(pids)} process(es)")
    return 0


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if pid_alive(pid)]
    return alive


def status(args: argparse.Namespace) -> int:
    from kubemind.local.up.runner import format_table

    while True:
        state = running_up()
        if args.format == "json":
            print(json.dumps(state or {"running": False}, indent=2))
        elif state is None:
            print("kubemind up is not running")
        else:
            gateway = state["gateway"]
            print(f"kubemind up (pid {state['pid']}) {state['overlay']}: gateway REST 127.0.0.1:{gateway['http_port']}"
                  f" gRPC 127.0.0.1:{gateway['grpc_port']}; {'ready' if state['ready'] else 'starting'}")
            print(format_table(state))
        if not args.watch:
            return 0 if state else 1
        try:
            time.sleep(1.0)
        except KeyboardInterrupt:
            return 0
        print("\033[2J\033[H", end="")
