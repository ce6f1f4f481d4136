"""python -m kubemind_predictors.triton.stock_server --host 127.0.0.1 --http_port P --grpc_port Q \\
    [tritonserver args: --model-store=DIR --allow-grpc=true ...]

NVIDIA's stock Triton image (nvcr.io/nvidia/tritonserver, no kubemind code) as `kubemind up`
runs it on this machine: the local tritonserver binary with the container's own args, bound to
the host and ports the local runner chose (the flags every kubemind component takes) and a free
metrics port, with the local install's backends unless the args name a backend directory.

The process replaces itself with tritonserver (os.execve): the PID `up` supervises and stops is
Triton's own, and the parent-death signal the runner set at spawn (kubemind.processes
die_with_parent) is kept across exec, so Triton still dies with `up`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from kubemind.errors import InvalidSettings
from kubemind.processes import free_port
from kubemind.settings import ComponentSettings
from kubemind_predictors.triton.launcher import TritonInstall, require_binary, stub_environment

PROG = "python -m kubemind_predictors.triton.stock_server"


def tritonserver_command(
    install: TritonInstall, host: str, http_port: int, grpc_port: int, metrics_port: int, args: Sequence[str]
) -> list[str]:
    """The tritonserver command line: the container's args, then the local listeners (last, so
    they win over a pod port the args still carry: Triton takes a flag's last value)."""
    names = {arg.split("=", 1)[0] for arg in args}
    backends = [] if "--backend-directory" in names else [f"--backend-directory={install.backend_dir}"]
    return [
        str(install.binary),
        *args,
        *backends,
        f"--http-address={host}",
        f"--grpc-address={host}",
        f"--metrics-address={host}",
        f"--http-port={http_port}",
        f"--grpc-port={grpc_port}",
        f"--metrics-port={metrics_port}",
    ]


def parse_local_flags(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """(--host, --http_port, --grpc_port as every kubemind component takes them, the rest)."""
    fields = ComponentSettings.model_fields
    # No abbreviations: `--http` must reach tritonserver untouched, not match --http_port.
    parser = argparse.ArgumentParser(prog=PROG, allow_abbrev=False, add_help=False)
    parser.add_argument("--host", default=fields["host"].default)
    parser.add_argument("--http_port", type=int, default=fields["http_port"].default)
    parser.add_argument("--grpc_port", type=int, default=fields["grpc_port"].default)
    return parser.parse_known_args(list(argv) if argv is not None else None)


def main(argv: Sequence[str] | None = None, install: TritonInstall | None = None) -> int:
    """Exec tritonserver; returns only when there is none (exit code 1, one line on stderr)."""
    local, args = parse_local_flags(argv)
    install = install or TritonInstall.default()
    try:
        require_binary(install.binary)
    except InvalidSettings as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    host = str(local.host)
    # 0 picks a free port, as for every kubemind component.
    command = tritonserver_command(
        install, host, local.http_port or free_port(host), local.grpc_port or free_port(host), free_port(host), args)
    sys.stdout.flush()
    os.execve(command[0], command, stub_environment(install))


if __name__ == "__main__":
    sys.exit(main())
