"""The images `make images` built, run as a cluster would run them: each image's own ENTRYPOINT,
ENV and file system, under `chroot` on a `buildah mount` of a container made from it (`podman run`
cannot run in these sandboxes). Servers bind 127.0.0.1 on free ports and are stopped by PID.

`make test-images` (root, buildah). The light images (core, storage-initializer) are built here
when missing; the heavy ones are checked only when `make images` has built them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from kubemind.processes import free_port
from tests.unit.test_images import BUILDER, MODULES_IN_PROGRESS

pytestmark = [pytest.mark.images, pytest.mark.slow, pytest.mark.timeout(1800)]

VFS = {**os.environ, "STORAGE_DRIVER": "vfs"}


def buildah(*args: str) -> str:
    return subprocess.run(
        ["buildah", "--storage-driver", "vfs", *args],
        check=True, capture_output=True, text=True, env=VFS,
    ).stdout.strip()


def is_built(name: str) -> bool:
    _, ref = BUILDER.refs(name)
    return subprocess.run(
        ["buildah", "--storage-driver", "vfs", "inspect", "--type", "image", ref],
        capture_output=True, env=VFS,
    ).returncode == 0


@pytest.fixture(scope="session", autouse=True)
def light_images_built() -> None:
    if os.geteuid() != 0:
        pytest.skip("the image tests need root (buildah mount, chroot)")
    light = [spec.name for spec in BUILDER.IMAGES if spec.light]
    started = time.monotonic()
    # Cheap when they are current: the builder compares its inputs digest.
    subprocess.run(
        [sys.executable, str(BUILDER.ROOT / "tools" / "build_images.py"), "--images", ",".join(light)],
        check=True,
    )
    print(f"light images ready in {time.monotonic() - started:.0f} s")


@dataclass
class MountedImage:
    name: str
    root: Path
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]

    def popen(self, args: list[str], log: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """The entry point with `args` (in place of CMD) under chroot; chroot execs, so the PID is the server's."""
        handle = open(log, "ab")  # noqa: SIM115 - handed to the child
        try:
            return subprocess.Popen(
                ["chroot", str(self.root), *self.entrypoint, *args],
                env={**self.env, **(extra_env or {})}, stdout=handle, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            handle.close()

    def run(self, args: list[str], timeout: float, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["chroot", str(self.root), *self.entrypoint, *args],
            env={**self.env, **(extra_env or {})}, capture_output=True, text=True, timeout=timeout,
        )


def mounted_paths(root: Path) -> list[str]:
    prefix = str(root.resolve())
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1] == prefix or line.split()[1].startswith(prefix + "/")]


@contextlib.contextmanager
def mounted(name: str) -> Iterator[MountedImage]:
    if not is_built(name):
        pytest.skip(f"kubemind/{name} is not built (IMAGES={name} make images)")
    _, ref = BUILDER.refs(name)
    config = json.loads(buildah("inspect", "--type", "image", ref))["OCIv1"]["config"]
    container = buildah("from", "--pull=never", "--name", f"kubemind-test-{name}-{os.getpid()}", ref)
    root: Path | None = None
    try:
        root = Path(buildah("mount", container))
        proc = root / "proc"
        subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True)
        try:
            env = dict(item.split("=", 1) for item in config.get("Env", []))
            env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            env["HOME"] = "/root"
            yield MountedImage(name, root, config.get("Entrypoint") or [], config.get("Cmd") or [], env)
        finally:
            subprocess.run(["umount", "-l", str(proc)], check=False)
    finally:
        # Never remove a container with something still mounted inside it.
        leftovers = [path for path in mounted_paths(root) if Path(path) != root.resolve()] if root else []
        assert not leftovers, f"still mounted: {leftovers}; not removing {container}"
        subprocess.run(["buildah", "--storage-driver", "vfs", "umount", container], capture_output=True, env=VFS)
        subprocess.run(["buildah", "--storage-driver", "vfs", "rm", container], capture_output=True, env=VFS)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.3)
    raise AssertionError(f"not ready after {timeout} s:\n{log.read_text(errors='replace')}")


def test_core_image_serves_the_simple_model(tmp_path):
    """The generic image's entry point (`python -m` + CMD simple) answers v2 REST inference."""
    started = time.monotonic()
    with mounted("core") as image:
        assert image.cmd[0] == "kubemind_predictors.simple"
        http_port, grpc_port = free_port(), free_port()
        log = tmp_path / "simple.log"
        # The image's CMD with the ports and host a test needs (later flags win).
        process = image.popen(
            [*image.cmd, "--host", "127.0.0.1", "--http_port", str(http_port), "--grpc_port", str(grpc_port)], log
        )
        try:
            base = f"http://127.0.0.1:{http_port}"
            wait_ready(f"{base}/v2/models/simple/ready", process, log, timeout=120)
            a = np.arange(16, dtype=np.int32)
            b = np.ones(16, dtype=np.int32)
            reply = httpx.post(f"{base}/v2/models/simple/infer", json={"inputs": [
                {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": a.tolist()},
                {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": b.tolist()},
            ]}, timeout=10)
            assert reply.status_code == 200, reply.text
            outputs = {output["name"]: output["data"] for output in reply.json()["outputs"]}
            assert outputs["OUTPUT0"] == (a + b).tolist()
            assert outputs["OUTPUT1"] == (a - b).tolist()
        finally:
            stop(process)
        assert process.returncode is not None
    print(f"core image: mount, start, infer, stop in {time.monotonic() - started:.1f} s")


def test_storage_initializer_image_downloads_a_registered_model(tmp_path):
    """KServe's contract, `ENTRYPOINT SRC_URI DEST_DIR`, against a real MLflow server on loopback."""
    from kubemind_registry.mlflow_store import MlflowRegistry
    from kubemind_registry.register import register_model
    from kubemind_registry.settings import RegistrySettings
    from tests.component.registry_fixtures import MlflowServer, build_onnx_model

    started = time.monotonic()
    server = MlflowServer(root=tmp_path / "mlflow", port=free_port())
    server.start()
    try:
        os.environ["MLFLOW_TRACKING_URI"] = server.url
        try:
            registry = MlflowRegistry(RegistrySettings())
            ref = register_model(registry, "image-test", build_onnx_model(tmp_path / "model"), "onnx")
        finally:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        with mounted("storage-initializer") as image:
            result = image.run(
                [f"models:/image-test/{ref.version}", "/mnt/models"], timeout=300,
                extra_env={"MLFLOW_TRACKING_URI": server.url},
            )
            assert result.returncode == 0, result.stdout + result.stderr
            models = image.root / "mnt" / "models"
            files = sorted(p.name for p in models.iterdir())
            assert "kubemind-model.json" in files, files
            assert any(name.endswith(".onnx") for name in files), files
            # A second run finds the same digest and downloads nothing.
            downloads = server.artifact_downloads()
            again = image.run([f"models:/image-test/{ref.version}", "/mnt/models"], timeout=300,
                              extra_env={"MLFLOW_TRACKING_URI": server.url})
            assert again.returncode == 0, again.stdout + again.stderr
            assert server.artifact_downloads() == downloads
    finally:
        server.stop()
    print(f"storage-initializer image: register, initialize twice in {time.monotonic() - started:.1f} s")


@pytest.mark.parametrize("name", [spec.name for spec in BUILDER.IMAGES])
def test_every_built_image_entry_point_starts(name):
    """Every image's entry point imports its whole stack and parses its flags (`--help`)."""
    started = time.monotonic()
    with mounted(name) as image:
        module = [*image.entrypoint, *image.cmd][2]
        site = next((image.root / "opt/kubemind/lib").glob("python3*/site-packages"))
        if module in MODULES_IN_PROGRESS and not (site / module.replace(".", "/")).is_dir():
            pytest.skip(f"{module} is not written yet (the image has no such module)")
        result = image.run([*image.cmd, "--help"], timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "--" in result.stdout
    print(f"{name}: entry point --help in {time.monotonic() - started:.1f} s")
