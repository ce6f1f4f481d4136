"""`kubemind serve`: start every local service on 127.0.0.1, print endpoints and sample calls,
restart one that exits (on its own ports, with backoff, as `kubemind up` restarts a replica: a
server whose engine died exits to be restarted), and stop them all (by PID) on Ctrl+C or SIGTERM.
With `--model models:/NAME@ALIAS`, serve that registered model instead
(kubemind.local.serve_model)."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kubemind.local.services import local_services
from kubemind.local.up.replicas import Replica
from kubemind.processes import PortInUse, ServerProcess, check_port_free, start_server


def register(subparsers: Any, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=__doc__)
    parser.add_argument(
        "--port_base",
        type=int,
        default=8080,
        help="first port; service i gets HTTP port base+2i and gRPC port base+2i+1 (0: free ports)",
    )
    parser.add_argument("--only", action="append", default=None, help="start only this service (repeatable)")
    parser.add_argument("--log_dir", type=Path, default=None, help="where service logs go (default: a temp folder)")
    model = parser.add_argument_group("one registered model (--model)")
    model.add_argument(
        "--model",
        metavar="URI",
        help="serve this registered model (models:/NAME@ALIAS or models:/NAME/VERSION) with the"
        " runtime its flavor names, instead of the built-in services",
    )
    model.add_argument("--http_port", type=int, default=8080, help="REST port of --model (0: a free port)")
    model.add_argument("--grpc_port", type=int, default=8081, help="gRPC port of --model (0: a free port)")
    model.add_argument(
        "--cache_dir",
        type=Path,
        default=None,
        help="node cache --model is initialized into (default: $KUBEMIND_HOME, ~/.kubemind)",
    )
    parser.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    if args.model:
        from kubemind.local.serve_model import serve_model

        return serve_model(args)
    available = local_services()
    wanted = set(args.only or [s.name for s in available if not s.opt_in])
    # a transformer needs its predictor running, a router the services of its graph
    while True:
        needed = set().union(*(s.needs for s in available if s.name in wanted)) - wanted
        if not needed:
            break
        wanted |= needed
    services = [s for s in available if s.name in wanted]
    if not services or wanted - {s.name for s in available}:
        print(f"no such service: {sorted(wanted - {s.name for s in available})}; available: {[s.name for s in available]}")
        return 2
    try:
        # Every fixed port before starting anything: one line, not a child's traceback.
        if args.port_base != 0:
            for port in range(args.port_base, args.port_base + 2 * len(services)):
                check_port_free(port)
    except PortInUse as exc:
        print(f"kubemind serve: {exc}; pass --port_base 0 for free ports", file=sys.stderr)
        return 2
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="kubemind-serve-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    running: dict[str, ServerProcess] = {}
    supervised: list[Replica] = []
    try:
        for index, service in enumerate(services):
            ports = () if args.port_base == 0 else (args.port_base + 2 * index, args.port_base + 2 * index + 1)
            print(f"starting {service.name} ({service.module}) ...", flush=True)
            forward: tuple[str, ...] = ()
            if service.forwards_to:
                target, (flag, transport) = running[service.forwards_to], service.forward_flag
                forward = (flag, target.grpc_address if transport == "grpc" else target.http_url)
            if service.graph_services:
                hosts = [
                    f"{name}={running[local].grpc_address if port == 'grpc' else running[local].http_url}"
                    for name, local, port in service.graph_services
                ]
                forward = ("--service_hosts", ",".join(hosts))
            try:
                server = start_server(
                    service.module,
                    (*service.args, *forward),
                    log_dir / f"{service.name}.log",
                    env=dict(service.env),
                    ports=ports,
                    ready_timeout=service.ready_timeout,
                )
            except (RuntimeError, TimeoutError) as exc:
                # The child's log holds its traceback; print where it is, not a second one.
                lines = [line for line in str(exc).splitlines() if line.strip()]
                print(f"kubemind serve: {service.name} did not start: {lines[-1] if lines else exc};"
                      f" log: {log_dir / f'{service.name}.log'}", file=sys.stderr)
                return 1
            running[service.name] = server
            supervised.append(
                Replica(service.name, 0, service.module, (*service.args, *forward), dict(service.env),
                        log_dir / f"{service.name}.log", service.ready_timeout, lambda line: print(line, flush=True),
                        server=server, ports=(server.http_port, server.grpc_port), ready=True,
                        started_at=time.monotonic())
            )
            print(
                f"\n== {service.name}: REST {server.http_url}  gRPC {server.grpc_address}  (pid {server.pid})\n"
                f"{service.sample_call(server.http_url, server.grpc_address)}\n",
                flush=True,
            )
        print(f"logs: {log_dir}\nall services ready; Ctrl+C stops them.", flush=True)
        while not stop.wait(0.5):
            for replica in supervised:
                replica.poll()  # an exited service is restarted on the same ports, with backoff
        return 0
    finally:
        for replica in reversed(supervised):
            if replica.server is not None:
                replica.server.stop()
