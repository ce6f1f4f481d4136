"""Running kubemind servers as real child processes: tests, benchmarks and `kubemind serve`.

Servers bind 127.0.0.1 on ports chosen at run time and are stopped by PID. On Linux each child
asks the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG), so even a SIGKILLed
`kubemind serve` or test run leaves no server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx


def python_command() -> str:
    """This interpreter's absolute path, shell-quoted: sample calls work from any folder."""
    return shlex.quote(sys.executable)


# Ports this process handed out: the kernel may offer one again before its server binds it (a
# supervisor starting many servers at once: `kubemind up` gave two replicas the same gRPC port).
_HANDED_OUT: dict[int, None] = {}
_HANDED_OUT_KEPT = 4096


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, and not one this process handed out before."""
    for _ in range(64):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            break
    _HANDED_OUT[port] = None
    while len(_HANDED_OUT) > _HANDED_OUT_KEPT:
        del _HANDED_OUT[next(iter(_HANDED_OUT))]
    return port


PR_SET_PDEATHSIG = 1  # linux/prctl.h


class PortInUse(OSError):
    """A port a server is told to bind is taken by another process."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        super().__init__(errno.EADDRINUSE, f"port {port} on {host} is already in use")
        self.port = port
        self.host = host


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Raise PortInUse when `port` cannot be bound (0 always can). The same SO_REUSEADDR bind
    the servers do, so a port with only TIME_WAIT connections counts as free."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(port, host) from None
            raise


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when this process dies, even by SIGKILL.

    prctl is looked up here, in the parent, so the forked child only makes the call. The
    signal follows the parent *thread*: start children from a thread that lives as long as
    they should (the main thread). None where prctl does not exist (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl ran
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


@dataclass
class ServerProcess:
    """A kubemind server running as a child process."""

    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM by PID, then SIGKILL if it outlives `timeout`; returns the exit code."""
        return stop_process(self.process, timeout)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM by PID, then SIGKILL if it outlives `timeout`; returns the exit code."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)
    return int(process.returncode)


def wait_for_health(
    health_url: str, process: subprocess.Popen[bytes], timeout: float, log_path: Path, interval: float = 0.1
) -> None:
    """Poll `health_url` until it answers 200; fail early (with the log) if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(health_url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    raise TimeoutError(f"{health_url} not ready after {timeout}s:\n{log_path.read_text(errors='replace')}")


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float, log_path: Path) -> None:
    """Wait for a v2 server's /v2/health/ready."""
    wait_for_health(f"{url}/v2/health/ready", process, timeout, log_path)


def spawn_server(
    module: str,
    args: Sequence[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    ports: tuple[int, int] | tuple[()] = (),
) -> ServerProcess:
    """Start `python -m module --host 127.0.0.1 --http_port P --grpc_port Q *args`; do not wait.

    Ports are chosen at run time unless `ports` gives (http, grpc). The child dies with this
    process (die_with_parent); its output goes to `log_path`.
    """
    http_port, grpc_port = ports or (free_port(), free_port())
    command = [
        sys.executable, "-m", module,
        "--host", "127.0.0.1", "--http_port", str(http_port), "--grpc_port", str(grpc_port), *args,
    ]
    log = log_path.open("ab")
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        preexec_fn=die_with_parent(),  # async-signal-safe enough: one prctl, no locks
    )
    log.close()  # the child holds its own copy
    return ServerProcess(process, http_port, grpc_port, log_path)


def start_server(
    module: str,
    args: Sequence[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    ready_timeout: float = 60.0,
    ports: tuple[int, int] | tuple[()] = (),
) -> ServerProcess:
    """spawn_server, then wait until the server is ready (stopping it if it never is)."""
    log_path.write_bytes(b"")  # one log per start
    server = spawn_server(module, args, log_path, env, ports)
    try:
        wait_until_ready(server.http_url, server.process, ready_timeout, log_path)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def running_server(module: str, args: Sequence[str], log_path: Path, **kwargs: object) -> Iterator[ServerProcess]:
    server = start_server(module, args, log_path, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
