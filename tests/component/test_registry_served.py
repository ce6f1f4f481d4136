"""A predictor serving an initialized folder reports the registered signature as its v2
metadata and the MLflow version as its served version.

Run as a module, this file is that predictor (like `python -m kubemind_predictors.simple`):
    python -m tests.component.test_registry_served --model_dir DIR --http_port P ...
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from kserve.protocol.infer_type import InferRequest, InferResponse

from kubemind.codecs import NumpyOutput
from kubemind.processes import running_server
from kubemind.settings import ComponentSettings, parse_settings
from kubemind_registry.mlflow_store import MlflowRegistry
from kubemind_registry.register import register_model
from kubemind_registry.registered_model import RegisteredModel
from kubemind_registry.settings import RegistrySettings
from tests.component import registry_fixtures
from tests.component.registry_fixtures import build_onnx_model

mlflow_server = registry_fixtures.mlflow_server
registry_env = registry_fixtures.registry_env


class FolderSettings(ComponentSettings):
    """A predictor for one registry-initialized folder."""

    model_dir: Path = Path("/mnt/models")
    """Folder prepared by `python -m kubemind_registry.initializer`."""


class LabelCountModel(RegisteredModel):
    """Answers every row with one score per line of labels.txt (a stand-in for a real backend:
    what is under test is the metadata and version, not the arithmetic)."""

    def load(self) -> bool:
        self.labels = (self.model_dir / "labels.txt").read_text().split()
        self.ready = True
        return self.ready

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        rows = payload.get_input_by_name("input").as_numpy()
        scores = np.ones((rows.shape[0], len(self.labels)), dtype=np.float32)
        return InferResponse(
            response_id=payload.id or "", model_name=self.name,
            infer_outputs=[NumpyOutput("scores", scores)], model_version=payload.model_version,
        )


def main(argv: list[str] | None = None) -> int:
    from kubemind.server import run

    settings = parse_settings(FolderSettings, argv, prog="test_registry_served")
    model = LabelCountModel(settings.model_name, settings.model_dir, max_batch_size=8)
    model.load()
    run(settings, [model])
    return 0


@pytest.mark.usefixtures("registry_env")
def test_served_metadata_is_the_registered_signature_and_version(tmp_path: Path) -> None:
    registry = MlflowRegistry(RegistrySettings())
    first = register_model(registry, "scorer", build_onnx_model(tmp_path / "a", hidden=3), "onnx")
    second = register_model(registry, "scorer", build_onnx_model(tmp_path / "b", hidden=5), "onnx",
                            alias="champion")
    assert int(second.version) > int(first.version)
    dest = tmp_path / "mnt" / "models"
    from kubemind_registry.initializer import initialize

    initialize(registry, "models:/scorer@champion", dest)

    with running_server(
        "tests.component.test_registry_served",
        ["--model_name", "scorer", "--model_dir", str(dest)],
        tmp_path / "server.log",
    ) as server:
        metadata = httpx.get(f"{server.http_url}/v2/models/scorer", timeout=10).json()
        assert metadata["versions"] == [second.version]
        assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3]}]
        assert metadata["outputs"] == [{"name": "scores", "datatype": "FP32", "shape": [-1, 5]}]

        versioned = f"{server.http_url}/v2/models/scorer/versions/{second.version}"
        assert httpx.get(versioned, timeout=10).status_code == 200
        reply = httpx.post(f"{versioned}/infer", timeout=10, json={"inputs": [
            {"name": "input", "datatype": "FP32", "shape": [2, 3], "data": [0.0] * 6}]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["model_version"] == second.version
        assert reply.json()["outputs"][0]["shape"] == [2, 5]
        # The version that is not in the folder is not served.
        stale = f"{server.http_url}/v2/models/scorer/versions/{first.version}"
        assert httpx.get(stale, timeout=10).status_code == 404
        # The registered signature is enforced: a wrong width is refused before predict.
        bad = httpx.post(f"{versioned}/infer", timeout=10, json={"inputs": [
            {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [0.0] * 4}]})
        assert bad.status_code == 400


if __name__ == "__main__":
    sys.exit(main())
