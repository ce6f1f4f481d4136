"""`kubemind serve`: start every local service on 127.0.0.1, print endpoints and sample calls,
and stop them all (by PID) on Ctrl+C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from kubemind.local.services import local_services
from kubemind.processes import ServerProcess, start_server


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
    parser.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    available = local_services()
    wanted = set(args.only or [s.name for s in available])
    # a transformer needs its predictor running
    wanted |= {s.forwards_to for s in available if s.name in wanted and s.forwards_to}
    services = [s for s in available if s.name in wanted]
    if not services or wanted - {s.name for s in available}:
        print(f"no such service: {sorted(wanted - {s.name for s in available})}; available: {[s.name for s in available]}")
        return 2
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="kubemind-serve-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    running: dict[str, ServerProcess] = {}
    try:
        for index, service in enumerate(services):
            ports = () if args.port_base == 0 else (args.port_base + 2 * index, args.port_base + 2 * index + 1)
            print(f"starting {service.name} ({service.module}) ...", flush=True)
            forward = ("--predictor_host", running[service.forwards_to].grpc_address) if service.forwards_to else ()
            server = start_server(
                service.module,
                (*service.args, *forward),
                log_dir / f"{service.name}.log",
                env=dict(service.env),
                ports=ports,
                ready_timeout=service.ready_timeout,
            )
            running[service.name] = server
            print(
                f"\n== {service.name}: REST {server.http_url}  gRPC {server.grpc_address}  (pid {server.pid})\n"
                f"{service.sample_call(server.http_url, server.grpc_address)}\n",
                flush=True,
            )
        print(f"logs: {log_dir}\nall services ready; Ctrl+C stops them.", flush=True)
        while not stop.wait(0.5):
            for server in running.values():
                if server.process.poll() is not None:
                    print(f"{server.log_path.stem} exited with {server.process.returncode}; see {server.log_path}")
                    return 1
        return 0
    finally:
        for server in reversed(running.values()):
            server.stop()
