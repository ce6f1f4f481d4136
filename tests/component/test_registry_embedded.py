"""With no MLFLOW_TRACKING_URI, kubemind uses an embedded sqlite store and artifact folder
under KUBEMIND_HOME: the whole flow works on one machine with no server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubemind.cli import main as kubemind_main
from kubemind_registry.initializer import main as initializer_main
from kubemind_registry.served import read_served_model
from tests.component.registry_fixtures import build_onnx_model


def test_register_resolve_initialize_on_the_embedded_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "kubemind-home"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("KUBEMIND_HOME", str(home))
    monkeypatch.chdir(tmp_path)  # MLflow must not drop ./mlruns or ./mlflow.db here

    model = build_onnx_model(tmp_path / "model")
    assert kubemind_main(["models", "register", "local-clf", str(model), "--flavor", "onnx",
                          "--alias", "champion"]) == 0
    registered = json.loads(capsys.readouterr().out)
    assert registered["source"].startswith((home / "artifacts").as_uri())

    dest = tmp_path / "models"
    assert initializer_main(["models:/local-clf@champion", str(dest)]) == 0
    assert read_served_model(dest).digest == registered["digest"]
    assert (dest / "model.onnx").read_bytes() == (model / "model.onnx").read_bytes()
    assert sorted(p.name for p in home.iterdir()) == ["artifacts", "audit", "mlflow.db"]
    # Who registered what and moved the alias is in the audit log, and its chain verifies.
    capsys.readouterr()
    assert kubemind_main(["audit", "show", "--model", "local-clf", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(r["action"], r["version"], r["before"], r["after"] if r["action"] == "models.alias" else None)
            for r in shown] == [("models.register", "1", None, None), ("models.alias", "1", None, "1")]
    assert shown[0]["after"]["digest"] == registered["digest"] and shown[0]["actor"]["name"]
    assert kubemind_main(["audit", "verify"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kubemind-home", "model", "models"]
