"""The data-scientist flow against a real `mlflow server`: register, alias, resolve, pin, and
initialize into a folder a predictor reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubemind.cli import main as kubemind_main
from kubemind_registry.served import read_served_model
from tests.component import registry_fixtures
from tests.component.registry_fixtures import (
    build_onnx_model,
    build_tiny_llm_folder,
)

REPO = Path(__file__).resolve().parents[2]

# The shared real-server fixtures (see registry_fixtures.py).
mlflow_server = registry_fixtures.mlflow_server
registry_env = registry_fixtures.registry_env
pytestmark = pytest.mark.usefixtures("registry_env")


def kubemind(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = kubemind_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def initializer(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The storage initializer exactly as KServe's init container runs it."""
    return subprocess.run(
        [sys.executable, "-m", "kubemind_registry.initializer", *argv],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )


def test_register_onnx_with_alias_records_signature_manifest_and_tags(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = build_onnx_model(tmp_path / "classifier")
    code, out, _ = kubemind(
        capsys, "models", "register", "classifier", str(model), "--flavor", "onnx",
        "--alias", "champion", "--owner", "ds-team",
    )
    assert code == 0
    registered = json.loads(out)  # stdout is pure JSON: MLflow's "View run" line is suppressed
    assert registered["uri"] == f"models:/classifier/{registered['version']}"
    assert "champion" in registered["aliases"]
    assert registered["digest"].startswith("sha256:")
    assert {k: registered["tags"][k] for k in ("framework", "task", "owner")} == {
        "framework": "onnx", "task": "inference", "owner": "ds-team",
    }
    assert registered["signature"] == {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 4]}],
    }

    code, out, _ = kubemind(capsys, "models", "resolve", "models:/classifier@champion")
    assert code == 0
    resolved = json.loads(out)
    assert resolved == registered


def test_register_tiny_llm_folder_keeps_nested_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = build_tiny_llm_folder(tmp_path / "tiny-llm")
    code, out, _ = kubemind(
        capsys, "models", "register", "tiny-llm", str(folder), "--flavor", "hf-llm",
        "--alias", "champion",
    )
    assert code == 0
    ref = json.loads(out)
    assert ref["signature"]["inputs"][0] == {"name": "text_input", "datatype": "BYTES", "shape": [-1]}

    dest = tmp_path / "mnt" / "models"
    result = initializer("models:/tiny-llm@champion", str(dest))
    assert result.returncode == 0, result.stderr
    for relative in ("config.json", "tokenizer.json", "model.safetensors",
                     "generation/generation_config.json"):
        assert (dest / relative).read_bytes() == (folder / relative).read_bytes()
    served = read_served_model(dest)
    assert (served.name, served.version, served.digest) == ("tiny-llm", ref["version"], ref["digest"])
    assert served.run_id == ref["run_id"]
    assert served.signature.inputs[0].name == "text_input"
    # No staging folder is left beside the model.
    assert sorted(p.name for p in dest.parent.iterdir()) == ["models"]


def test_moving_champion_makes_pin_check_fail_until_pin_is_rerun(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    v1 = build_onnx_model(tmp_path / "v1", hidden=2)
    v2 = build_onnx_model(tmp_path / "v2", hidden=5)
    code, out, _ = kubemind(capsys, "models", "register", "ranker", str(v1), "--flavor", "onnx",
                            "--alias", "champion")
    first = json.loads(out)
    root = checkout(tmp_path)
    pin = ("models", "pin", "--env", "staging", "--root", str(root))
    # No pins yet is its own answer, not "stale".
    code, out, _ = kubemind(capsys, *pin, "--check")
    assert (code, out.strip()) == (0, "no pins for staging yet: nothing to check")
    code, out, _ = kubemind(capsys, *pin, "--model", "cv-classifier=models:/ranker@champion")
    assert code == 0
    pins_file = root / "inferenceservices/overlays/staging/pins/model-pins.yaml"
    (patch,) = list(yaml.safe_load_all(pins_file.read_text()))
    assert patch["spec"]["predictor"]["model"]["storageUri"] == f"models:/ranker/{first['version']}"
    assert patch["metadata"]["annotations"] == {
        "kubemind.io/model-ref": "models:/ranker@champion",
        "kubemind.io/model-name": "ranker",
        "kubemind.io/model-version": first["version"],
        "kubemind.io/model-run-id": first["run_id"],
        "kubemind.io/model-digest": first["digest"],
    }
    assert kubemind(capsys, *pin, "--check")[0] == 0

    # A new version takes the champion alias: the committed pin is now stale.
    code, out, _ = kubemind(capsys, "models", "register", "ranker", str(v2), "--flavor", "onnx")
    second = json.loads(out)
    assert kubemind(capsys, "models", "alias", "ranker", "champion", second["version"])[0] == 0
    code, _, err = kubemind(capsys, *pin, "--check")
    assert code == 1
    assert "cv-classifier" in err and f"models:/ranker/{second['version']}" in err

    # Rerunning pin (no --model: it refreshes the refs already in the file) fixes it.
    assert kubemind(capsys, *pin)[0] == 0
    assert f"models:/ranker/{second['version']}" in pins_file.read_text()
    assert kubemind(capsys, *pin, "--check")[0] == 0
    # A second pin with nothing moved rewrites the same bytes (no diff in CI).
    before = pins_file.read_bytes()
    assert kubemind(capsys, *pin)[0] == 0
    assert pins_file.read_bytes() == before


def test_resolve_unknown_alias_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = kubemind(capsys, "models", "resolve", "models:/no-such-model@champion")
    assert code == 1
    assert out == ""
    assert "models:/no-such-model@champion" in err and "Traceback" not in err


def checkout(tmp_path: Path) -> Path:
    """A copy of the repository's kustomize trees: the overlays the pins apply to."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "inferenceservices", root / "inferenceservices")
    return root


def render(root: Path, env: str) -> list[dict]:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(root / "inferenceservices" / "overlays" / env)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for kustomize) not installed")
def test_pin_takes_effect_in_the_rendered_overlay(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repository's own prod overlay, pinned from a subfolder of the checkout (no
    --root), renders the pinned version and lineage; the other overlays are untouched."""
    root = checkout(tmp_path)
    before = {env: render(root, env) for env in ("dev", "prod")}
    folder = build_tiny_llm_folder(tmp_path / "minilm")
    code, out, _ = kubemind(capsys, "models", "register", "minilm", str(folder),
                            "--flavor", "sentence-transformers", "--alias", "prod")
    assert code == 0
    ref = json.loads(out)
    monkeypatch.chdir(root / "inferenceservices" / "base")
    assert kubemind(capsys, "models", "pin", "--env", "prod",
                    "--model", "embedder=models:/minilm@prod")[0] == 0

    after = render(root, "prod")
    (isvc,) = [o for o in after if o["kind"] == "InferenceService"
               and o["metadata"]["name"] == "embedder"]
    assert isvc["metadata"]["namespace"] == "kubemind"
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == ref["uri"]
    assert isvc["metadata"]["annotations"]["kubemind.io/model-digest"] == ref["digest"]
    assert isvc["metadata"]["annotations"]["kubemind.io/model-ref"] == "models:/minilm@prod"
    # Only the pinned fields changed: everything else renders as before.
    (old,) = [o for o in before["prod"] if o["kind"] == "InferenceService"
              and o["metadata"]["name"] == "embedder"]
    old["spec"]["predictor"]["model"]["storageUri"] = ref["uri"]
    old["metadata"].setdefault("annotations", {}).update(isvc["metadata"]["annotations"])
    assert isvc == old
    assert render(root, "dev") == before["dev"]
    assert kubemind(capsys, "models", "pin", "--env", "prod", "--check")[0] == 0
