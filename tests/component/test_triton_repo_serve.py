"""A user's own Triton model repository, end to end against a real `mlflow server` and a real
tritonserver: `kubemind models register --flavor triton-repo --alias champion`,
`kubemind serve --model models:/NAME@champion`, called with the stock `tritonclient` clients.

The predictor serves exactly the registered repository (not kubemind's shipped models), under
the registered name and version, and writes nothing into the downloaded folder (a read-only
mount on a cluster) nor leaves a temporary folder behind."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kubemind.cli import main as kubemind_main
from tests.component import registry_fixtures
from tests.component.serve_fixtures import Serve, wait_dead
from tests.component.triton_fixtures import as_array, stock_client

mlflow_server = registry_fixtures.mlflow_server
registry_env = registry_fixtures.registry_env
pytestmark = pytest.mark.usefixtures("registry_env")

# A Python-backend model as a user writes one: plain numpy, nothing of kubemind's.
SCALER_MODEL = textwrap.dedent(
    '''
    import json

    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            config = json.loads(args["model_config"])
            self.factor = float(config["parameters"]["factor"]["string_value"])

        def execute(self, requests):
            responses = []
            for request in requests:
                x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy()
                scaled = (x * self.factor).astype(np.float32)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("scaled", scaled)]))
            return responses
    '''
)

SCALER_CONFIG = textwrap.dedent(
    '''
    name: "scaler"
    backend: "python"
    max_batch_size: 8
    input [ { name: "x", data_type: TYPE_FP32, dims: [ 4 ] } ]
    output [ { name: "scaled", data_type: TYPE_FP32, dims: [ 4 ] } ]
    instance_group [ { kind: KIND_CPU, count: 1 } ]
    parameters { key: "factor" value: { string_value: "2.5" } }
    '''
)


def write_repository(root: Path) -> Path:
    (root / "scaler" / "1").mkdir(parents=True)
    (root / "scaler" / "config.pbtxt").write_text(SCALER_CONFIG)
    (root / "scaler" / "1" / "model.py").write_text(SCALER_MODEL)
    return root


def files_under(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
    }


def test_registered_triton_repository_is_served_as_it_is(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    registry_env: dict[str, str],
) -> None:
    import tritonclient.http as triton_http
    from tritonclient.utils import InferenceServerException

    repository = write_repository(tmp_path / "scaler-repo")
    # Two versions, so the served version is visibly the registry's, not Triton's folder "1".
    for _ in range(2):
        code = kubemind_main(
            ["models", "register", "tiny-scaler", str(repository), "--flavor", "triton-repo", "--alias", "champion"]
        )
        out, err = capsys.readouterr()
        assert code == 0, err
    version = str(json.loads(out)["version"])
    assert version == "2"

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    serve = Serve(tmp_path, "--model", "models:/tiny-scaler@champion", "--http_port", "0", "--grpc_port", "0")
    try:
        serve.wait_ready(timeout=300)
        model_dir = Path(registry_env["KUBEMIND_HOME"]) / "models" / "tiny-scaler" / version
        downloaded = files_under(model_dir)
        url = serve.http_url.removeprefix("http://")

        client = triton_http.InferenceServerClient(url)
        metadata = client.get_model_metadata("tiny-scaler")
        assert metadata["versions"] == [version]
        assert [(t["name"], t["datatype"]) for t in metadata["inputs"]] == [("x", "FP32")]
        # Only the registered repository is served: none of kubemind's shipped models.
        index = {entry["name"] for entry in client.get_model_repository_index()}
        assert index == {"tiny-scaler"}
        with pytest.raises(InferenceServerException, match="Request for unknown model"):
            client.get_model_metadata("simple")

        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        tensor = triton_http.InferInput("x", [2, 4], "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("tiny-scaler", [tensor], model_version=version)
        np.testing.assert_allclose(result.as_numpy("scaled"), x * 2.5)
        assert result.get_response()["model_version"] == version

        grpc_address = re.search(r"gRPC (127\.0\.0\.1:\d+)", serve.text())[1]  # type: ignore[index]
        (answer,) = stock_client(grpc_address, {
            "model": "tiny-scaler", "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": x.tolist()}],
        })
        np.testing.assert_allclose(as_array(answer, "scaled"), x * 2.5)

        # A version the registry does not have for this deployment: Triton's wording, 404.
        with pytest.raises(InferenceServerException, match="version 1 is not found"):
            client.infer("tiny-scaler", [tensor], model_version="1")
        # Bad input still gets the field named.
        wrong = triton_http.InferInput("x", [2, 4], "INT32")
        wrong.set_data_from_numpy(x.astype(np.int32))
        with pytest.raises(InferenceServerException, match="x"):
            client.infer("tiny-scaler", [wrong])
    finally:
        assert serve.stop() == 0, serve.text()
    for pid in serve.child_pids:
        assert wait_dead(pid), f"pid {pid} outlived kubemind serve"
    # Nothing written into the downloaded repository, and no scratch folder left behind.
    assert files_under(model_dir) == downloaded
    assert not (model_dir / "tritonserver.log").exists()
    assert sorted(p.name for p in scratch.iterdir() if p.name.startswith("kubemind-triton-")) == []
