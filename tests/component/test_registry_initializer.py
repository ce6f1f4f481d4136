"""The storage initializer's guarantees, against a real `mlflow server`: verified downloads,
nothing half-written at DEST, no download when DEST already holds the digest, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubemind.processes import free_port
from kubemind_registry.initializer import main as initializer_main
from kubemind_registry.manifest import MANIFEST_FILE, FileEntry, Manifest, build_manifest
from kubemind_registry.mlflow_store import MlflowRegistry
from kubemind_registry.register import register_model
from kubemind_registry.resolve import DIGEST_TAG, FLAVOR_TAG, ModelRef
from kubemind_registry.served import METADATA_FILE, Signature, read_served_model
from kubemind_registry.settings import RegistrySettings
from tests.component import registry_fixtures
from tests.component.registry_fixtures import MlflowServer, build_onnx_model

# The shared real-server fixtures (see registry_fixtures.py).
mlflow_server = registry_fixtures.mlflow_server
registry_env = registry_fixtures.registry_env
pytestmark = pytest.mark.usefixtures("registry_env")


def initializer(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The storage initializer exactly as KServe's init container runs it."""
    return subprocess.run(
        [sys.executable, "-m", "kubemind_registry.initializer", *argv],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )


def initializer_in_process(
    capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str]:
    """Same entry point without the interpreter start (MLflow's import alone takes ~2 s)."""
    code = initializer_main(list(argv))
    return code, capsys.readouterr().err


def registry() -> MlflowRegistry:
    return MlflowRegistry(RegistrySettings())


def stored_folder(server: MlflowServer, ref: ModelRef) -> Path:
    """Where the server keeps this version's files (the proxied artifact store)."""
    prefix = "mlflow-artifacts:/"
    assert ref.source.startswith(prefix)
    return server.artifacts_dir / ref.source[len(prefix):]


def test_tampered_file_fails_naming_it_and_leaves_no_folder(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    ref = register_model(registry(), "tamper", build_onnx_model(tmp_path / "m"), "onnx",
                         alias="champion")
    stored = stored_folder(mlflow_server, ref) / "labels.txt"
    # Same size, one byte changed: only the hash can tell.
    stored.write_text(stored.read_text().replace("class-1", "class-X"))

    dest = tmp_path / "out" / "models"
    result = initializer("models:/tamper@champion", str(dest))
    assert result.returncode == 1
    assert "labels.txt" in result.stderr and "sha256" in result.stderr
    assert "Traceback" not in result.stderr
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # the staging folder is gone too


def test_tampered_manifest_is_caught_by_the_registered_digest(
    mlflow_server: MlflowServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = register_model(registry(), "tamper-manifest", build_onnx_model(tmp_path / "m"), "onnx")
    stored = stored_folder(mlflow_server, ref)
    # An attacker swaps a file and rewrites its hash in the manifest to match.
    (stored / "labels.txt").write_text("swapped\n")
    manifest = json.loads((stored / MANIFEST_FILE).read_text())
    for entry in manifest["files"]:
        if entry["path"] == "labels.txt":
            entry["size"] = len("swapped\n")
            entry["sha256"] = "0" * 64
    (stored / MANIFEST_FILE).write_text(json.dumps(manifest))

    code, err = initializer_in_process(capsys, ref.uri, str(tmp_path / "dest"))
    assert code == 1
    assert MANIFEST_FILE in err and "digest" in err
    assert not (tmp_path / "dest").exists()


def test_second_run_with_same_digest_downloads_nothing(
    mlflow_server: MlflowServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = register_model(registry(), "cached", build_onnx_model(tmp_path / "m"), "onnx",
                         alias="champion")
    dest = tmp_path / "models"
    code, err = initializer_in_process(capsys, "models:/cached@champion", str(dest))
    assert code == 0, err
    downloads_after_first = mlflow_server.artifact_downloads()

    # Proof that nothing is fetched: the server's copy is gone, yet the second run succeeds,
    # and the server logged no artifact GET.
    shutil.rmtree(stored_folder(mlflow_server, ref))
    second = initializer("models:/cached@champion", str(dest))
    assert second.returncode == 0, second.stderr
    assert "nothing downloaded" in second.stderr
    assert mlflow_server.artifact_downloads() == downloads_after_first
    assert read_served_model(dest).digest == ref.digest


def test_existing_destination_is_replaced_only_after_verification(
    mlflow_server: MlflowServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DEST already exists, as KServe's /mnt/models volume mount does."""
    good = register_model(registry(), "in-place", build_onnx_model(tmp_path / "a", hidden=2), "onnx")
    dest = tmp_path / "mnt-models"
    dest.mkdir()
    (dest / "stale.bin").write_bytes(b"old model")

    assert initializer_in_process(capsys, good.uri, str(dest))[0] == 0
    assert sorted(p.name for p in dest.iterdir()) == [METADATA_FILE, "labels.txt", "model.onnx"]

    bad = register_model(registry(), "in-place", build_onnx_model(tmp_path / "b", hidden=6), "onnx")
    (stored_folder(mlflow_server, bad) / "model.onnx").write_bytes(b"not the registered bytes")
    code, err = initializer_in_process(capsys, bad.uri, str(dest))
    assert code == 1 and "model.onnx" in err
    # The verified previous model is untouched and still marked complete.
    assert read_served_model(dest).version == good.version
    assert sorted(p.name for p in dest.iterdir()) == [METADATA_FILE, "labels.txt", "model.onnx"]


def test_artifact_paths_escaping_dest_are_refused(
    mlflow_server: MlflowServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest (registered with a matching digest) that lists ../ paths writes nothing."""
    store = registry()
    model = build_onnx_model(tmp_path / "m")
    honest = build_manifest(model, "onnx", Signature())
    evil = Manifest("onnx", Signature(), (*honest.files, FileEntry("../../escaped.txt", 3, "0" * 64)))
    run_id, source = store.log_model_folder(
        model, {MANIFEST_FILE: json.dumps(evil.to_dict()).encode()}, "evil", {}
    )
    version = store.create_version(
        "escape", source, run_id, {DIGEST_TAG: evil.digest, FLAVOR_TAG: "onnx"}
    )
    work = tmp_path / "work"
    work.mkdir()
    code, err = initializer_in_process(capsys, f"models:/escape/{version}", str(work / "a" / "models"))
    assert code == 1
    assert "escapes the destination" in err and "../../escaped.txt" in err
    assert not (work / "a" / "models").exists()
    assert not list(tmp_path.rglob("escaped.txt"))


def test_registry_down_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = initializer("models:/anything@champion", str(tmp_path / "models"),
                         env={"MLFLOW_TRACKING_URI": down})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"cannot reach the MLflow registry at {down}" in result.stderr or (
        f"the MLflow registry at {down} failed" in result.stderr
    )
    assert not (tmp_path / "models").exists()


def test_bad_uri_is_refused_before_any_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = initializer_in_process(capsys, "s3://bucket/model", str(tmp_path / "models"))
    assert code == 1
    assert "models:/NAME@ALIAS" in err
