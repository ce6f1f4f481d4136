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
from kubemind.manifests import rendering
from kubemind_registry.errors import InvalidModelUri, UnsafeArtifactPath
from kubemind_registry.manifest import MANIFEST_FILE, Manifest, build_manifest, safe_destination
from kubemind_registry.mlflow_store import VersionInfo
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
    select_target,
)
from kubemind_registry.resolve import DIGEST_TAG, SIGNATURE_TAG
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


PREDICTOR_MODEL = ("spec", "predictor", "model", "storageUri")


def test_pins_render_as_kustomize_patches_and_read_back(tmp_path: Path) -> None:
    pins = [
        Pin(Target("llm", None, PREDICTOR_MODEL), "models:/smollm@champion", "models:/smollm/4", "smollm", "4",
            "r4", "sha256:4"),
        Pin(Target("embedder", None, PREDICTOR_MODEL), "models:/minilm@prod", "models:/minilm/1", "minilm", "1",
            "r1", "sha256:1"),
    ]
    text = render_pins("prod", pins)
    assert text.startswith("# Generated by `kubemind models pin --env prod`")
    docs = list(yaml.safe_load_all(text))
    assert docs[0]["kind"] == "InferenceService"
    assert docs[0]["spec"] == {"predictor": {"model": {"storageUri": "models:/smollm/4"}}}
    assert docs[0]["metadata"]["annotations"]["kubemind.io/model-version"] == "4"
    path = tmp_path / "model-pins.yaml"
    path.write_text(text)
    assert read_refs(path) == {"llm/predictor": "models:/smollm@champion", "embedder/predictor": "models:/minilm@prod"}


def test_base_inference_services_give_the_pin_its_namespace_and_field(tmp_path: Path) -> None:
    base = tmp_path / "inferenceservices" / "base" / "ranker"
    base.mkdir(parents=True)
    (base / "isvc.yaml").write_text(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n"
        "metadata: {name: ranker, namespace: kubemind}\n"
        "spec: {predictor: {model: {storageUri: models:/ranker/1}}}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n"
    )
    (target,) = base_targets(tmp_path)["ranker"]
    assert target == Target("ranker", "kubemind", PREDICTOR_MODEL)
    pin = Pin(target, "models:/ranker@champion", "models:/ranker/2", "ranker", "2", "r", "d")
    assert pin.to_patch()["metadata"]["namespace"] == "kubemind"


def test_pin_flags_are_validated() -> None:
    assert parse_model_flags(["llm=models:/smollm@champion", "rag/transformer=models:/docs-index@champion"]) == {
        "llm": "models:/smollm@champion", "rag/transformer": "models:/docs-index@champion"}
    with pytest.raises(InvalidModelUri):
        parse_model_flags(["llm=s3://x"])
    for flag in ("rag/=models:/x@a", "rag/transformer/x=models:/x@a", "/predictor=models:/x@a"):
        with pytest.raises(InvalidInput, match="ISVC/COMPONENT=models:/NAME@ALIAS"):
            parse_model_flags([flag])


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
        component = (kustomization.parent / "pins" / "kustomization.yaml").read_text()
        if has_pins(REPO, env):
            # What the pins make of it needs the registry: CI's `pin --check` compares it.
            assert "- path: model-pins.yaml" in component
        else:
            assert component == render_component(env, [])


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


class AliasRegistry:
    """Stands in for MLflow in the pin tests: each alias names a version, tagged as
    `kubemind models register` tags it (digest and signature)."""

    def __init__(self, home: Path, aliases: dict[str, str]) -> None:
        self.settings = RegistrySettings(home=home)
        self.aliases = aliases  # "name@alias" -> version

    def get_version(self, uri: ModelUri) -> VersionInfo:
        version = self.aliases[f"{uri.name}@{uri.alias}"] if uri.alias else str(uri.version)
        return VersionInfo(uri.name, version, f"mlflow-artifacts:/{uri.name}/{version}", f"run-{uri.name}-{version}",
                           tags={DIGEST_TAG: f"sha256:{uri.name}-{version}", SIGNATURE_TAG: "{}"})


RAG_PINS = ("--model", "rag=models:/smollm2-chat@champion", "--model", "rag/transformer=models:/docs-index@champion")


@pytest.fixture()
def rag_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, AliasRegistry]:
    """A copy of the repository's inferenceservices and a registry `kubemind models pin` uses."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "inferenceservices", root / "inferenceservices")
    registry = AliasRegistry(tmp_path / "home", {"smollm2-chat@champion": "7", "docs-index@champion": "5"})
    monkeypatch.setattr("kubemind_registry.cli._registry", lambda: registry)
    return root, registry


needs_kustomize = pytest.mark.skipif(shutil.which("kubectl") is None and shutil.which("kustomize") is None,
                                     reason="kustomize (kubectl) not installed")


def _rendered_isvc(root: Path, env: str, name: str) -> dict:
    (isvc,) = [o for o in yaml.safe_load_all(rendering.render(root / "inferenceservices" / "overlays" / env))
               if o and o["kind"] == "InferenceService" and o["metadata"]["name"] == name]
    return isvc


def test_rag_has_two_pin_targets_the_predictor_storage_uri_and_the_transformer_storage_uri_env() -> None:
    assert [t.describe() for t in base_targets(REPO)["rag"]] == [
        "rag/transformer (spec.transformer.containers[0].env[0].value)",
        "rag/predictor (spec.predictor.model.storageUri)",
    ]


@needs_kustomize
def test_pinning_both_rag_artifacts_renders_them_and_validates(
    capsys: pytest.CaptureFixture[str], rag_checkout: tuple[Path, AliasRegistry]
) -> None:
    root, registry = rag_checkout
    before = _rendered_isvc(root, "prod", "rag")
    pin = ("models", "pin", "--env", "prod", "--root", str(root))
    code, out, err = _kubemind(capsys, *pin, *RAG_PINS)
    assert code == 0, err
    assert "rag/transformer: models:/docs-index@champion -> models:/docs-index/5" in out

    after = _rendered_isvc(root, "prod", "rag")
    transformer = after["spec"]["transformer"]["containers"][0]
    assert transformer["env"][0] == {"name": "STORAGE_URI", "value": "models:/docs-index/5"}
    assert after["spec"]["predictor"]["model"]["storageUri"] == "models:/smollm2-chat/7"
    notes = after["metadata"]["annotations"]
    assert notes["kubemind.io/model-ref"] == "models:/smollm2-chat@champion"
    assert notes["kubemind.io/model-version"] == "7"
    assert notes["kubemind.io/transformer-model-ref"] == "models:/docs-index@champion"
    assert notes["kubemind.io/transformer-model-digest"] == "sha256:docs-index-5"
    # Only the two URIs and the lineage changed: the other env vars, args and containers render as before.
    before["spec"]["transformer"]["containers"][0]["env"][0]["value"] = "models:/docs-index/5"
    before["spec"]["predictor"]["model"]["storageUri"] = "models:/smollm2-chat/7"
    before["metadata"]["annotations"].update(
        {k: v for k, v in notes.items() if k not in before["metadata"]["annotations"]})
    assert after == before
    overlay = root / "inferenceservices" / "overlays" / "prod"
    assert _kubemind(capsys, "validate", str(overlay), "--allow-refs", str(REPO / "external-objects.yaml"))[0] == 0
    assert _kubemind(capsys, *pin, "--check")[0] == 0

    # Each alias moving makes the check fail, naming the target and the version it names now.
    for alias, version, target in (("docs-index@champion", "6", "rag/transformer"),
                                   ("smollm2-chat@champion", "8", "rag/predictor")):
        registry.aliases[alias] = version
        code, _, err = _kubemind(capsys, *pin, "--check")
        assert code == 1
        assert f"{target}: models:/{alias} now resolves to models:/{alias.split('@')[0]}/{version}" in err
        # Rerunning pin (no --model) refreshes both refs in the file.
        assert _kubemind(capsys, *pin)[0] == 0
        assert _kubemind(capsys, *pin, "--check")[0] == 0
    refreshed = _rendered_isvc(root, "prod", "rag")
    assert refreshed["spec"]["transformer"]["containers"][0]["env"][0]["value"] == "models:/docs-index/6"
    assert refreshed["spec"]["predictor"]["model"]["storageUri"] == "models:/smollm2-chat/8"


@needs_kustomize
def test_a_reordered_base_env_fails_the_build_instead_of_pinning_another_variable(
    capsys: pytest.CaptureFixture[str], rag_checkout: tuple[Path, AliasRegistry]
) -> None:
    root, _ = rag_checkout
    assert _kubemind(capsys, "models", "pin", "--env", "dev", "--root", str(root), *RAG_PINS)[0] == 0
    base = root / "inferenceservices" / "base" / "rag" / "inferenceservice.yaml"
    isvc = yaml.safe_load(base.read_text())
    env = isvc["spec"]["transformer"]["containers"][0]["env"]
    env.append(env.pop(0))
    base.write_text(yaml.safe_dump(isvc))
    with pytest.raises(rendering.RenderError, match="test failed"):
        rendering.render(root / "inferenceservices" / "overlays" / "dev")


def test_a_missing_or_ambiguous_target_names_the_inference_service_and_its_targets(
    capsys: pytest.CaptureFixture[str], rag_checkout: tuple[Path, AliasRegistry]
) -> None:
    root, _ = rag_checkout
    pin = ("models", "pin", "--env", "dev", "--root", str(root))
    code, _, err = _kubemind(capsys, *pin, "--model", "rag/explainer=models:/x@champion")
    assert code == 1
    assert "'rag' has no registered artifact in its explainer" in err
    assert "rag/transformer (spec.transformer.containers[0].env[0].value)" in err
    assert "rag/predictor (spec.predictor.model.storageUri)" in err
    # Two storageUris: ISVC alone is ambiguous.
    ranker = root / "inferenceservices" / "base" / "ranker.yaml"
    ranker.write_text("apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: ranker}\n"
                      "spec: {predictor: {model: {storageUri: models:/r/1}}, explainer: {art: {storageUri: models:/e/1}}}\n")
    code, _, err = _kubemind(capsys, *pin, "--model", "ranker=models:/x@champion")
    assert code == 1
    assert "'ranker' has 2 registered artifacts: name one as ISVC/COMPONENT=" in err
    assert "ranker/explainer (spec.explainer.art.storageUri)" in err
    assert not (root / "inferenceservices" / "overlays" / "dev" / "pins" / "model-pins.yaml").exists()


def test_isvc_alone_is_its_container_storage_uri_when_that_is_its_only_artifact(tmp_path: Path) -> None:
    base = tmp_path / "inferenceservices" / "base"
    base.mkdir(parents=True)
    (base / "index.yaml").write_text(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: index}\n"
        "spec: {predictor: {containers: [{name: kserve-container, env: [{name: A, value: b},"
        " {name: STORAGE_URI, value: models:/i/1}]}]}}\n"
    )
    target = select_target(tmp_path, base_targets(tmp_path), "index")
    assert target.path == ("spec", "predictor", "containers", 0, "env", 1, "value")
    assert target.guards == ((("spec", "predictor", "containers", 0), "kserve-container"),
                             (("spec", "predictor", "containers", 0, "env", 1), "STORAGE_URI"))


def _pins_folder(root: Path, env: str) -> dict[str, str]:
    folder = root / "inferenceservices" / "overlays" / env / "pins"
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


@needs_kustomize
def test_unpin_keeps_the_other_pins_and_the_last_one_leaves_the_overlay_as_before(
    capsys: pytest.CaptureFixture[str], rag_checkout: tuple[Path, AliasRegistry]
) -> None:
    root, registry = rag_checkout
    overlay = root / "inferenceservices" / "overlays" / "prod"
    before, folder_before = rendering.render(overlay), _pins_folder(root, "prod")
    base_index = _rendered_isvc(root, "prod", "rag")["spec"]["transformer"]["containers"][0]["env"][0]
    assert _kubemind(capsys, "models", "pin", "--env", "prod", "--root", str(root), *RAG_PINS)[0] == 0
    unpin = ("models", "unpin", "--env", "prod", "--root", str(root))

    # `rag` alone is ambiguous with two pins: an error naming both, nothing written.
    pinned = _pins_folder(root, "prod")
    code, _, err = _kubemind(capsys, *unpin, "rag")
    assert code == 1
    assert "rag has 2 pins in prod: name one as ISVC/COMPONENT (rag/predictor, rag/transformer)" in err
    assert _pins_folder(root, "prod") == pinned

    # The pin kept stays at its version although its alias has moved: unpin does not re-resolve.
    registry.aliases["smollm2-chat@champion"] = "8"
    code, out, err = _kubemind(capsys, *unpin, "rag/transformer")
    assert code == 0, err
    assert "rag/transformer: unpinned" in out
    rag = _rendered_isvc(root, "prod", "rag")
    assert rag["spec"]["transformer"]["containers"][0]["env"][0] == base_index
    assert rag["spec"]["predictor"]["model"]["storageUri"] == "models:/smollm2-chat/7"
    assert not any(key.startswith("kubemind.io/transformer-model-") for key in rag["metadata"]["annotations"])
    assert read_refs(root / "inferenceservices" / "overlays" / "prod" / "pins" / "model-pins.yaml") == {
        "rag/predictor": "models:/smollm2-chat@champion"}

    # The last pin: `rag` alone names it now; the folder and the rendered overlay are as before pinning.
    code, out, err = _kubemind(capsys, *unpin, "rag")
    assert code == 0, err
    assert "rag/predictor: unpinned" in out and "no pins left for prod" in out
    assert _pins_folder(root, "prod") == folder_before
    assert rendering.render(overlay) == before
    assert _kubemind(capsys, "models", "pin", "--env", "prod", "--root", str(root), "--check")[0] == 0

    log = [json.loads(line) for line in (registry.settings.home / "audit" / "audit.jsonl").read_text().splitlines()]
    unpins = [(r["object"]["name"], r["object"]["component"], r["before"]["version"])
              for r in log if r["action"] == "models.unpin"]
    assert unpins == [("rag", "transformer", "5"), ("rag", "predictor", "7")]


def test_unpin_of_a_model_that_is_not_pinned_is_an_error_naming_it(
    capsys: pytest.CaptureFixture[str], rag_checkout: tuple[Path, AliasRegistry]
) -> None:
    root, _ = rag_checkout
    unpin = ("models", "unpin", "--env", "dev", "--root", str(root))
    folder = _pins_folder(root, "dev")
    code, out, err = _kubemind(capsys, *unpin, "cv-classifier")
    assert (code, out) == (1, "")
    assert "cv-classifier is not pinned in dev (pinned there: none)" in err and "Traceback" not in err
    assert _pins_folder(root, "dev") == folder
    assert _kubemind(capsys, "models", "pin", "--env", "dev", "--root", str(root), *RAG_PINS)[0] == 0
    folder = _pins_folder(root, "dev")
    # One unknown target among known ones: an error naming it, and nothing removed.
    code, _, err = _kubemind(capsys, *unpin, "rag/transformer", "cv-classifier/predictor")
    assert code == 1
    assert "cv-classifier/predictor is not pinned in dev (pinned there: rag/predictor, rag/transformer)" in err
    assert _pins_folder(root, "dev") == folder
