"""Start and stop a local `tritonserver` process (the binary shipped in nvidia-pytriton).

The process binds loopback ports only, loads models explicitly (`--model-control-mode=explicit`),
and is stopped by PID: SIGTERM to its process group (Triton plus its Python-backend stubs), then
SIGKILL if it does not exit in time. On a cluster Triton runs in its own container and none of
this is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from kubemind.errors import BackendUnavailable, InvalidSettings
from kubemind.processes import free_port

logger = logging.getLogger("kubemind.triton.launcher")


@dataclass(frozen=True)
class TritonInstall:
    """Where tools/install.d/40-triton.sh put Triton and what its Python backend needs."""

    home: Path

    @classmethod
    def default(cls) -> TritonInstall:
        return cls(Path(sys.prefix) / "share" / "kubemind" / "triton")

    @property
    def tritonserver_dir(self) -> Path:
        return self.home / "server" / "pytriton" / "tritonserver"

    @property
    def binary(self) -> Path:
        return self.tritonserver_dir / "bin" / "tritonserver"

    @property
    def backend_dir(self) -> Path:
        return self.tritonserver_dir / "backends"

    @property
    def site_packages(self) -> Path:
        return self.home / "site-packages"

    @property
    def onnx_dir(self) -> Path:
        return self.home / "models"

    @property
    def stub_python(self) -> Path:
        """A venv whose site-packages is the side environment, first on the stub's PATH."""
        return self.home / "stub-python"

    def prepare_stub_python(self) -> Path:
        """Create `stub_python` if missing; returns its bin folder.

        The backend stub embeds Python in isolated mode: PYTHONPATH is ignored and its prefix is
        found from the `python3` first on PATH. Left alone that is the base interpreter, whose
        numpy 2 the stub's tensor bridge misreads (outputs come back empty). Pointing it at a
        venv (pyvenv.cfg + site-packages = the numpy<2 side environment) fixes it for every
        model.py, a user's own included, not only for kubemind's shipped models.
        """
        bin_dir = self.stub_python / "bin"
        if (bin_dir / "python3").exists():
            return bin_dir
        base = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
        staging = Path(tempfile.mkdtemp(prefix=".stub-python-", dir=self.home))
        (staging / "bin").mkdir()
        (staging / "bin" / "python3").symlink_to(base)
        (staging / "pyvenv.cfg").write_text(
            f"home = {base.parent}\ninclude-system-site-packages = false\n"
            f"version = {sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}\n"
        )
        lib = staging / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
        lib.mkdir(parents=True)
        (lib / "site-packages").symlink_to(self.site_packages.resolve())
        try:
            staging.rename(self.stub_python)
        except OSError:  # another launcher made it first
            shutil.rmtree(staging, ignore_errors=True)
        return bin_dir


def require_binary(binary: Path) -> None:
    """InvalidSettings, saying how to install it, when there is no tritonserver at `binary`."""
    if not binary.is_file():
        raise InvalidSettings(
            f"tritonserver not found at {binary}; run `make install` "
            "(tools/install.d/40-triton.sh unpacks it from nvidia-pytriton)"
        )


def stub_environment(install: TritonInstall) -> dict[str, str]:
    """Environment for tritonserver: the Python-backend stub links libpython dynamically and, left
    alone, loads whichever libpython the system has; point it at this interpreter's own, and its
    packages at the side environment (see TritonInstall.prepare_stub_python)."""
    site_packages = install.site_packages
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join((str(install.prepare_stub_python()), env.get("PATH", "")))
    libdir = sysconfig.get_config_var("LIBDIR") or str(Path(sys.base_prefix) / "lib")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
    env["KUBEMIND_TRITON_SITE_PACKAGES"] = str(site_packages)
    env.pop("PYTHONPATH", None)  # the stub must not see the main venv's numpy 2
    return env


class TritonServerProcess:
    """One tritonserver process on loopback ports; use as a context manager or start()/stop()."""

    def __init__(
        self,
        repository: Path,
        models: Sequence[str],
        *,
        install: TritonInstall | None = None,
        binary: Path | None = None,
        host: str = "127.0.0.1",
        http_port: int = 0,
        grpc_port: int = 0,
        metrics_port: int = 0,
        startup_timeout: float = 120.0,
        log_path: Path | None = None,
        scratch: Path | None = None,
    ):
        self.install = install or TritonInstall.default()
        self.binary = binary or self.install.binary
        self.repository = repository
        self.models = list(models)
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self.startup_timeout = startup_timeout
        self.scratch = scratch
        """A folder of this process's own (its log, a built repository), removed by stop()."""
        self.log_path = log_path or (scratch or repository.parent) / "tritonserver.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.relaunches = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        args = [
            str(self.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.install.backend_dir}",
            "--model-control-mode=explicit",
            *(f"--load-model={name}" for name in self.models),
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--exit-on-error=true",
            "--log-verbose=0",
        ]
        return args

    def start(self) -> TritonServerProcess:
        """Start Triton and wait (bounded) until it and every model report ready."""
        require_binary(self.binary)
        if self._process is not None and self._process.poll() is None:
            return self
        self._stopping.clear()
        self._spawn()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # Own session: stop() signals the group, so the backend stubs go with Triton.
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=stub_environment(self.install),
                start_new_session=True,
            )
        logger.info("started tritonserver pid %d (grpc %s)", self._process.pid, self.grpc_url)

    def supervise(self, max_backoff: float = 30.0) -> None:
        """Relaunch Triton whenever it dies (a crash, an OOM kill): its process group is killed
        first (the Python-backend stubs outlive a SIGKILLed Triton), the dead process reaped,
        and a new one started on the same ports after 1, 2, 4 ... max_backoff seconds."""
        if self._supervisor is None:
            self._supervisor = threading.Thread(
                target=self._supervise, args=(max_backoff,), name="triton-supervisor", daemon=True
            )
            self._supervisor.start()

    def _supervise(self, max_backoff: float) -> None:
        failures = 0
        while not self._stopping.wait(0.5):
            process = self._process
            if process is None or process.poll() is None:
                continue
            self._signal_group(process.pid, signal.SIGKILL)  # poll() reaped Triton; now its stubs
            delay = min(max_backoff, 2.0**failures)
            failures += 1
            logger.error(
                "tritonserver pid %d exited with %s; relaunching in %.0f s", process.pid, process.returncode, delay
            )
            if self._stopping.wait(delay):
                return
            try:
                self._spawn()
                self.wait_ready()
            except Exception as exc:  # try again after a longer wait
                logger.error("tritonserver relaunch failed: %s", exc)
                continue
            self.relaunches += 1
            failures = 0

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline and not self._stopping.is_set():
                if self._process is None or self._process.poll() is not None:
                    raise BackendUnavailable(f"tritonserver exited during start-up:\n{self.log_tail()}")
                try:
                    if client.get(f"{self.http_url}/v2/health/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise BackendUnavailable(
            f"tritonserver not ready within {self.startup_timeout:.0f}s:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL after `timeout`; idempotent."""
        self._stopping.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(timeout)
            self._supervisor = None
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            self._signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout)
        # Stubs outlive a Triton that died abruptly; the group still names them.
        self._signal_group(process.pid, signal.SIGKILL)
        logger.info("stopped tritonserver pid %d", process.pid)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL Triton and its stubs at once (fault injection: a crash, not a shutdown)."""
        if self._process is not None:
            self._signal_group(self._process.pid, signal.SIGKILL)
            self._process.wait(10)
            self._process = None

    @staticmethod
    def _signal_group(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> TritonServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
