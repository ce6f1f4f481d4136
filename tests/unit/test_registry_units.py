"""Registry pieces that need no server: URIs, manifests, path safety, signatures, pins files,
and the served-model metadata a predictor reads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubemind.errors import InvalidInput, ModelNotReady
from kubemind_registry.errors import InvalidModelUri, UnsafeArtifactPath
from kubemind_registry.manifest import MANIFEST_FILE, Manifest, build_manifest, safe_destination
from kubemind_registry.pin import (
    Pin,
    Target,
    base_targets,
    check_overlay,
    has_pins,
    parse_model_flags,
    read_refs,
    render_component,
    render_pins,
)
from kubemind_registry.served import (
    ServedModel,
    Signature,
    TensorSignature,
    read_served_model,
    write_served_model,
)
from kubemind_registry.settings import RegistrySettings
from kubemind_registry.signatures import infer_signature
from kubemind_registry.uris import ModelUri, parse_model_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/resnet@champion", ModelUri("resnet", alias="champion")),
        ("models:/resnet/12", ModelUri("resnet", version="12")),
        ("models:/my.model-v2@canary_1", ModelUri("my.model-v2", alias="canary_1")),
    ],
)
def test_model_uris_parse_and_print_back(uri: str, expected: ModelUri) -> None:
    assert parse_model_uri(uri) == expected
    assert str(expected) == uri


@pytest.mark.parametrize(
    "uri", ["s3://bucket/model", "models:/resnet", "models:/resnet/latest", "models:/a/b/c",
            "models:/resnet@", "runs:/abc/model", "models:/../x@a"]
)
def test_other_uris_are_refused(uri: str) -> None:
    with pytest.raises(InvalidModelUri, match="models:/NAME@ALIAS"):
        parse_model_uri(uri)


@pytest.mark.parametrize(
    "path", ["../x", "a/../../x", "/etc/passwd", "a/..", "..", ".", "", "a\\..\\x", "a/../b"]
)
def test_paths_escaping_the_destination_are_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(UnsafeArtifactPath):
        safe_destination(tmp_path, path)


def test_nested_paths_stay_inside(tmp_path: Path) -> None:
    assert safe_destination(tmp_path, "a/b/c.bin") == tmp_path / "a" / "b" / "c.bin"


def test_symlink_inside_destination_cannot_redirect_a_file(tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafeArtifactPath):
        safe_destination(tmp_path / "dest", "link/x")


def _model_folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "weights.bin").write_bytes(b"\x00" * 100)
    (root / "sub" / "vocab.txt").write_text("a\nb\n")
    return root


def test_manifest_digest_is_stable_and_covers_every_byte(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path / "m")
    first = build_manifest(folder, "onnx", Signature())
    assert [f.path for f in first.files] == ["sub/vocab.txt", "weights.bin"]
    assert Manifest.from_bytes(json.dumps(first.to_dict(), indent=4).encode()).digest == first.digest
    (folder / "sub" / "vocab.txt").write_text("a\nc\n")
    assert build_manifest(folder, "onnx", Signature()).digest != first.digest


def test_manifest_excludes_itself_and_refuses_symlinks(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path / "m")
    (folder / MANIFEST_FILE).write_text("{}")
    assert MANIFEST_FILE not in [f.path for f in build_manifest(folder, "onnx", Signature()).files]
    (folder / "link").symlink_to("/etc/hostname")
    with pytest.raises(UnsafeArtifactPath, match="link"):
        build_manifest(folder, "onnx", Signature())


def test_triton_repository_signature_comes_from_config_pbtxt(tmp_path: Path) -> None:
    (tmp_path / "classifier").mkdir()
    (tmp_path / "classifier" / "config.pbtxt").write_text(
        'name: "classifier"\nbackend: "python"\nmax_batch_size: 8\n'
        'input [\n  {\n    name: "image"\n    data_type: TYPE_UINT8\n    dims: [ 224, 224, 3 ]\n  }\n]\n'
        'output [\n  { name: "probs", data_type: TYPE_FP32, dims: [ 1000 ] },\n'
        '  { name: "label", data_type: TYPE_STRING, dims: [ -1 ] }\n]\n'
    )
    signature = infer_signature(tmp_path, "triton-repo")
    assert signature.inputs == (TensorSignature("image", "UINT8", (224, 224, 3)),)
    assert signature.outputs == (
        TensorSignature("probs", "FP32", (1000,)),
        TensorSignature("label", "BYTES", (-1,)),
    )


def test_sentence_transformers_signature_reads_the_embedding_width(tmp_path: Path) -> None:
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"word_embedding_dimension": 384}')
    signature = infer_signature(tmp_path, "sentence-transformers")
    assert signature.outputs == (TensorSignature("embedding", "FP32", (-1, 384)),)


def test_onnx_signature_comes_from_the_graph(tmp_path: Path) -> None:
    from tests.component.registry_fixtures import build_onnx_model

    signature = infer_signature(build_onnx_model(tmp_path, hidden=7), "onnx")
    assert signature.to_dict() == {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 7]}],
    }


def test_served_model_round_trips_and_missing_metadata_is_not_ready(tmp_path: Path) -> None:
    with pytest.raises(ModelNotReady, match="storage initializer"):
        read_served_model(tmp_path)
    served = ServedModel(
        name="resnet", version="3", run_id="r1", digest="sha256:ab", flavor="onnx",
        source_uri="models:/resnet/3",
        signature=Signature((TensorSignature("x", "FP32", (-1, 3)),), ()),
        files=("model.onnx",),
    )
    write_served_model(tmp_path, served)
    assert read_served_model(tmp_path) == served
    (tmp_path / "kubemind-model.json").write_text("{not json")
    with pytest.raises(ModelNotReady, match="not valid"):
        read_served_model(tmp_path)


def test_pins_render_as_kustomize_patches_and_read_back(tmp_path: Path) -> None:
    pins = [
        Pin("llm", "models:/smollm@champion", "models:/smollm/4", "smollm", "4", "r4", "sha256:4"),
        Pin("embedder", "models:/minilm@prod", "models:/minilm/1", "minilm", "1", "r1", "sha256:1"),
    ]
    text = render_pins("prod", pins)
    assert text.startswith("# Generated by `kubemind models pin --env prod`")
    docs = list(yaml.safe_load_all(text))
    assert docs[0]["kind"] == "InferenceService"
    assert docs[0]["spec"] == {"predictor": {"model": {"storageUri": "models:/smollm/4"}}}
    assert docs[0]["metadata"]["annotations"]["kubemind.io/model-version"] == "4"
    path = tmp_path / "model-pins.yaml"
    path.write_text(text)
    assert read_refs(path) == {
        "llm": ("models:/smollm@champion", Target(None, ("spec", "predictor", "model"))),
        "embedder": ("models:/minilm@prod", Target(None, ("spec", "predictor", "model"))),
    }


def test_base_inference_services_give_the_pin_its_namespace_and_field(tmp_path: Path) -> None:
    base = tmp_path / "inferenceservices" / "base" / "ranker"
    base.mkdir(parents=True)
    (base / "isvc.yaml").write_text(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n"
        "metadata: {name: ranker, namespace: kubemind}\n"
        "spec: {predictor: {model: {storageUri: models:/ranker/1}}}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n"
    )
    assert base_targets(tmp_path) == {"ranker": Target("kubemind", ("spec", "predictor", "model"))}
    pin = Pin("ranker", "models:/ranker@champion", "models:/ranker/2", "ranker", "2", "r", "d",
              namespace="kubemind")
    assert pin.to_patch()["metadata"]["namespace"] == "kubemind"


def test_pin_flags_are_validated() -> None:
    assert parse_model_flags(["llm=models:/smollm@champion"]) == {"llm": "models:/smollm@champion"}
    with pytest.raises(InvalidModelUri):
        parse_model_flags(["llm=s3://x"])


def test_runtime_side_modules_do_not_import_mlflow() -> None:
    """Design principle 7: a predictor reading an initialized folder never loads MLflow."""
    code = (
        "import sys, kubemind_registry.served, kubemind_registry.registered_model;"
        "sys.exit('mlflow' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_settings_default_to_an_embedded_store_under_kubemind_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("KUBEMIND_HOME", str(tmp_path / "home"))
    settings = RegistrySettings()
    assert settings.effective_tracking_uri == f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    assert settings.local_artifact_root == tmp_path / "home" / "artifacts"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert RegistrySettings().effective_tracking_uri == "http://mlflow:5000"
    assert RegistrySettings().local_artifact_root is None


def test_losing_a_race_to_an_identical_initializer_is_success(tmp_path: Path) -> None:
    """Two pods sharing a node cache: the second rename finds DEST already complete."""
    from kubemind_registry.initializer import _commit
    from kubemind_registry.resolve import ModelRef

    ref = ModelRef("m", "1", "src", "run", "sha256:d", "onnx", Signature())
    served = ServedModel("m", "1", "run", "sha256:d", "onnx", "models:/m/1", files=("a.bin",))
    dest, staging = tmp_path / "models", tmp_path / ".models.kubemind-staging-x"
    for folder in (dest, staging):
        folder.mkdir()
        (folder / "a.bin").write_bytes(b"weights")
        write_served_model(folder, served)
    _commit(staging, dest, ref)
    assert not staging.exists()
    assert read_served_model(dest) == served

    other = ModelRef("m", "2", "src", "run", "sha256:other", "onnx", Signature())
    staging.mkdir()
    (staging / "a.bin").write_bytes(b"new")
    with pytest.raises(OSError):
        _commit(staging, dest, other)


REPO = Path(__file__).resolve().parents[2]


def _kubemind(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from kubemind.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_pin_outside_a_checkout_refuses_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = _kubemind(
        capsys, "models", "pin", "--env", "prod", "--model", "llm=models:/smollm@champion"
    )
    assert code == 1
    assert "no kustomize overlays (inferenceservices/overlays/)" in err and "--root" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_every_overlay_includes_its_pins_component_from_the_start() -> None:
    overlays = sorted((REPO / "inferenceservices" / "overlays").glob("*/kustomization.yaml"))
    assert overlays
    for kustomization in overlays:
        env = kustomization.parent.name
        assert check_overlay(REPO, env) == kustomization.parent
        assert (kustomization.parent / "pins" / "kustomization.yaml").read_text() == (
            render_component(env, has_pins=has_pins(REPO, env))
        )


def test_pin_check_without_pins_says_so_and_succeeds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "inferenceservices", root / "inferenceservices")
    code, out, err = _kubemind(capsys, "models", "pin", "--env", "dev", "--root", str(root), "--check")
    assert (code, out.strip(), err) == (0, "no pins for dev yet: nothing to check", "")


def test_pin_into_an_overlay_without_the_pins_component_refuses(tmp_path: Path) -> None:
    overlay = tmp_path / "inferenceservices" / "overlays" / "qa"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text("resources: [../../base]\n")
    with pytest.raises(InvalidInput, match="does not list its pins component"):
        check_overlay(tmp_path, "qa")
    with pytest.raises(InvalidInput, match="environments here: qa"):
        check_overlay(tmp_path, "prod")
