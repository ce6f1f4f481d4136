"""Issue 18, registry and initializer: bounded downloads, honest errors, clean exits.

The registry is the real embedded one (sqlite, no server). A version's files are served by a
small HTTP artifact server on loopback, speaking the MLflow artifact proxy's wire protocol (a
GET per file), because what it has to do here no real MLflow server does: drip bytes, answer
404 and 500, hold a download open while the initializer is sent SIGTERM.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kubemind_registry.errors import (
    ArtifactIntegrityError,
    DownloadStalled,
    ModelVersionNotFound,
    RegistryUnavailable,
    UnsafeArtifactPath,
)
from kubemind_registry.initializer import STAGING_PREFIX, initialize
from kubemind_registry.initializer import main as initializer_main
from kubemind_registry.manifest import MANIFEST_FILE, FileEntry, Manifest, build_manifest
from kubemind_registry.mlflow_store import MlflowRegistry
from kubemind_registry.resolve import DIGEST_TAG, FLAVOR_TAG, SIGNATURE_TAG
from kubemind_registry.served import Signature
from kubemind_registry.settings import RegistrySettings

MODEL_BYTES = os.urandom(200_000)


@dataclass
class ArtifactServer:
    files: dict[str, bytes] = field(default_factory=dict)
    drip: set[str] = field(default_factory=set)
    """Paths answered one byte every 0.5 s."""
    errors: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    port: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def source(self) -> str:
        return f"http://127.0.0.1:{self.port}/model"


@pytest.fixture(scope="module")
def artifact_server() -> Iterator[ArtifactServer]:
    state = ArtifactServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.removeprefix("/model/")
            if path in state.errors:
                code, body = state.errors[path]
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            data = state.files.get(path)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if path not in state.drip:
                self.wfile.write(data)
                return
            for offset in range(len(data)):
                if state.stop.wait(0.5):
                    return
                self.wfile.write(data[offset : offset + 1])
                self.wfile.flush()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.stop.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, artifact_server: ArtifactServer) -> Iterator[Path]:
    """One embedded registry for the module (creating its sqlite schema takes a while), holding
    `dripper@champion`, whose files the artifact server holds."""
    home = tmp_path_factory.mktemp("registry-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.chdir(home)  # MLflow must not drop ./mlruns elsewhere
        register_http_version(MlflowRegistry(RegistrySettings(home=home)), artifact_server)
        yield home


@pytest.fixture
def artifacts(home: Path, artifact_server: ArtifactServer) -> Iterator[ArtifactServer]:
    """The artifact server, restored to serving the registered version after each test."""
    files = dict(artifact_server.files)
    yield artifact_server
    artifact_server.files = files
    artifact_server.drip.clear()
    artifact_server.errors.clear()


def registry(home: Path, **settings: float) -> MlflowRegistry:
    return MlflowRegistry(RegistrySettings(home=home, **settings))


def register_http_version(registry: MlflowRegistry, artifacts: ArtifactServer, name: str = "dripper") -> None:
    """A version whose files live on the artifact server, with the digest kubemind vouches by."""
    signature = Signature()
    manifest = Manifest("onnx", signature, (FileEntry("model.bin", len(MODEL_BYTES), hashlib.sha256(MODEL_BYTES).hexdigest()),))
    artifacts.files["model.bin"] = MODEL_BYTES
    artifacts.files[MANIFEST_FILE] = json.dumps(manifest.to_dict()).encode()
    tags = {DIGEST_TAG: manifest.digest, FLAVOR_TAG: "onnx", SIGNATURE_TAG: json.dumps(signature.to_dict())}
    version = registry.create_version(name, artifacts.source, "", tags)
    registry.set_alias(name, "champion", version)


def test_a_dripping_download_fails_at_the_stall_timeout(home: Path, tmp_path: Path, artifacts: ArtifactServer) -> None:
    artifacts.drip.add("model.bin")
    with pytest.raises(DownloadStalled) as caught:
        initialize(registry(home, stall_timeout_seconds=2, download_timeout_seconds=600), "models:/dripper@champion", tmp_path / "dest")
    assert str(caught.value) == "download model.bin: stalled, less than 65536 bytes in 2 s"
    assert not (tmp_path / "dest").exists()
    assert not [p for p in tmp_path.iterdir() if STAGING_PREFIX in p.name]


def test_a_dripping_download_fails_at_the_overall_deadline(home: Path, tmp_path: Path, artifacts: ArtifactServer) -> None:
    artifacts.drip.add("model.bin")
    with pytest.raises(DownloadStalled, match=r"^download model.bin: not finished within 2 s$"):
        initialize(registry(home, stall_timeout_seconds=600, download_timeout_seconds=2), "models:/dripper@champion", tmp_path / "dest")


def test_a_missing_artifact_is_not_found_not_an_outage(home: Path, tmp_path: Path, artifacts: ArtifactServer) -> None:
    del artifacts.files["model.bin"]
    with pytest.raises(ModelVersionNotFound) as caught:
        initialize(registry(home), "models:/dripper@champion", tmp_path / "dest")
    assert str(caught.value).startswith("download model.bin: not found in the artifact store (")
    assert "cannot reach" not in str(caught.value)


def test_the_servers_error_text_is_kept(home: Path, tmp_path: Path, artifacts: ArtifactServer) -> None:
    artifacts.errors["model.bin"] = (403, b'{"error_code": "PERMISSION_DENIED", "message": "bucket policy denies GetObject"}')
    with pytest.raises(RegistryUnavailable) as caught:
        initialize(registry(home, http_retries=0), "models:/dripper@champion", tmp_path / "dest")
    assert str(caught.value).endswith("answered 403: bucket policy denies GetObject")


def test_an_unknown_alias_is_not_found(home: Path, artifacts: ArtifactServer, tmp_path: Path) -> None:
    with pytest.raises(ModelVersionNotFound, match="not found"):
        initialize(registry(home), "models:/dripper@nosuch", tmp_path / "dest")


@pytest.mark.parametrize("manifest", [b"[1, 2]", b'{"schema": 1, "flavor": "onnx", "signature": [], "files": []}', b"{", b'{"schema": 1}'])
def test_a_malformed_manifest_is_a_clear_error(
    home: Path, tmp_path: Path, artifacts: ArtifactServer, manifest: bytes
) -> None:
    artifacts.files[MANIFEST_FILE] = manifest
    with pytest.raises(ArtifactIntegrityError, match=f"^{MANIFEST_FILE} of {artifacts.source} is unreadable: "):
        initialize(registry(home), "models:/dripper@champion", tmp_path / "dest")


def test_the_destination_gets_the_mode_mkdir_gives(home: Path, tmp_path: Path, artifacts: ArtifactServer) -> None:
    result = initialize(registry(home), "models:/dripper@champion", tmp_path / "dest")
    umask = os.umask(0)
    os.umask(umask)
    assert (result.dest.stat().st_mode & 0o777) == 0o777 & ~umask
    assert (result.dest / "model.bin").read_bytes() == MODEL_BYTES


def test_a_symlinked_folder_is_refused_at_registration(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "weights").mkdir(parents=True)
    (model / "weights" / "a.bin").write_bytes(b"a")
    (tmp_path / "elsewhere").mkdir()
    (model / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(UnsafeArtifactPath, match=r"^linked: symlinked folders cannot be registered$"):
        build_manifest(model, "onnx", Signature())


def initializer_process(home: Path, uri: str, dest: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kubemind_registry.initializer", uri, str(dest)],
        env={**os.environ, "KUBEMIND_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_mid_download_removes_the_staging_folder(home: Path, tmp_path: Path, artifacts: ArtifactServer) -> None:
    artifacts.drip.add("model.bin")
    dest = tmp_path / "dest"
    process = initializer_process(home, "models:/dripper@champion", dest)
    try:
        deadline = time.monotonic() + 120
        staged: list[Path] = []
        while not staged:  # wait until the download has begun writing into its staging folder
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the download never started"
            staged = [p for p in tmp_path.iterdir() if STAGING_PREFIX in p.name and any(p.rglob("model.bin"))]
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    assert not [p for p in tmp_path.iterdir() if STAGING_PREFIX in p.name]
    assert not dest.exists()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 kB tmpfs: a real full disk."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_is_blamed_on_dest(
    home: Path, tiny_disk: Path, artifacts: ArtifactServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBEMIND_HOME", str(home))
    dest = tiny_disk / "models"
    assert initializer_main(["models:/dripper@champion", str(dest)]) == 1
    stderr = capsys.readouterr().err
    assert stderr.strip().startswith(f"kubemind-initializer: error: cannot write {dest}: [Errno 28] No space left on device")
    assert "MLflow" not in stderr and "Traceback" not in stderr
    assert list(tiny_disk.iterdir()) == []
