"""A data scientist's own MLflow pyfunc model, end to end against a real `mlflow server`:
saved with MLflow, `kubemind models register --flavor pyfunc --alias champion`,
`kubemind serve --model models:/NAME@champion`, called with the stock `tritonclient.http`
client; the answer is the model's own output and the served version is the registered one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from kubemind.cli import main as kubemind_main
from tests.component import registry_fixtures
from tests.component.serve_fixtures import Serve, pid_alive, wait_dead

mlflow_server = registry_fixtures.mlflow_server
registry_env = registry_fixtures.registry_env
pytestmark = pytest.mark.usefixtures("registry_env")

# Models from code (MLflow's recommended form): the class travels as source, not as a pickle
# that needs this test module importable wherever the model is loaded.
SHOP_MODEL = textwrap.dedent(
    '''
    import mlflow
    import pandas as pd


    class ShopScorer(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            if (model_input["name"] == "boom").any():
                raise ValueError("boom is not a product name")
            return pd.DataFrame({
                "total": model_input["price"] * model_input["quantity"],
                "label": model_input["name"].str.upper() + "!",
            })


    mlflow.models.set_model(ShopScorer())
    '''
)

ROWS = pd.DataFrame({
    "price": np.array([1.5, 2.25, 10.0]),
    "quantity": np.array([2, 4, 1], dtype=np.int64),
    "name": ["apple", "pear", "fig"],
})

# No requirement inference: MLflow would load the model in a subprocess to find its imports.
REQUIREMENTS = ["mlflow==3.17.2", "pandas"]


def save_shop_model(folder: Path) -> Path:
    import mlflow
    from mlflow.models import infer_signature

    code = folder.parent / "shop_model.py"
    code.write_text(SHOP_MODEL)
    output = pd.DataFrame({"total": ROWS["price"] * ROWS["quantity"], "label": ["A!", "B!", "C!"]})
    mlflow.pyfunc.save_model(
        str(folder), python_model=str(code), signature=infer_signature(ROWS, output),
        pip_requirements=REQUIREMENTS,
    )
    return folder


def save_sklearn_model(folder: Path) -> tuple[Path, pd.DataFrame]:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    features = pd.DataFrame({"x1": [0.0, 0.2, 0.9, 1.0, 0.1, 0.8], "x2": [1.0, 0.9, 0.1, 0.0, 0.8, 0.3]})
    labels = np.array([0, 0, 1, 1, 0, 1])
    classifier = LogisticRegression().fit(features, labels)
    mlflow.sklearn.save_model(
        classifier, str(folder), signature=infer_signature(features, classifier.predict(features)),
        pip_requirements=[*REQUIREMENTS, "scikit-learn"],
    )
    return folder, features


def register(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code = kubemind_main(["models", "register", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return dict(json.loads(out))


def test_registered_pyfunc_model_is_served_by_one_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mlflow_server: registry_fixtures.MlflowServer
) -> None:
    import mlflow.pyfunc
    import tritonclient.http as triton_http
    from tritonclient.utils import InferenceServerException

    folder = save_shop_model(tmp_path / "shop-model")
    registered = register(capsys, "shop-scorer", str(folder), "--flavor", "pyfunc", "--alias", "champion")
    version = registered["version"]
    assert registered["signature"]["inputs"] == [
        {"name": "price", "datatype": "FP64", "shape": [-1]},
        {"name": "quantity", "datatype": "INT64", "shape": [-1]},
        {"name": "name", "datatype": "BYTES", "shape": [-1]},
    ]

    serve = Serve(tmp_path, "--model", "models:/shop-scorer@champion", "--http_port", "0", "--grpc_port", "0")
    try:
        serve.wait_ready()
        url = serve.http_url
        (child,) = serve.child_pids
        text = serve.text()
        # Ready-to-paste calls: absolute interpreter path, the registered version and inputs.
        assert f"{sys.executable} - <<'PY'" in text
        assert f"/v2/models/shop-scorer/versions/{version}/infer" in text
        assert "InferInput('quantity', [1], 'INT64')" in text
        # ... and they run as printed.
        calls = text[text.index("curl -s "):text.index("\nPY\n") + 4]
        pasted = subprocess.run(["bash", "-c", calls], capture_output=True, text=True, timeout=60)
        assert pasted.returncode == 0, pasted.stderr
        assert f'"model_version":"{version}"' in pasted.stdout
        assert "'total': array([1.])" in pasted.stdout and "'label': array([b'HELLO!']" in pasted.stdout

        client = triton_http.InferenceServerClient(url.removeprefix("http://"))
        metadata = client.get_model_metadata("shop-scorer")
        assert metadata["versions"] == [version]
        assert metadata["platform"] == "mlflow_pyfunc"

        inputs = []
        for column, datatype in (("price", "FP64"), ("quantity", "INT64"), ("name", "BYTES")):
            tensor = triton_http.InferInput(column, [len(ROWS)], datatype)
            values = ROWS[column].to_numpy()
            tensor.set_data_from_numpy(
                np.array([v.encode() for v in values], dtype=object) if datatype == "BYTES" else values
            )
            inputs.append(tensor)
        result = client.infer("shop-scorer", inputs, model_version=version)
        assert result.get_response()["model_version"] == version

        expected = mlflow.pyfunc.load_model(str(folder)).predict(ROWS)
        np.testing.assert_array_equal(result.as_numpy("total"), expected["total"].to_numpy())
        assert [v.decode() for v in result.as_numpy("label")] == list(expected["label"])

        # The same call as JSON (what the printed curl sends).
        reply = httpx.post(f"{url}/v2/models/shop-scorer/versions/{version}/infer", timeout=30, json={
            "inputs": [
                {"name": "price", "datatype": "FP64", "shape": [1], "data": [3.0]},
                {"name": "quantity", "datatype": "INT64", "shape": [1], "data": [3]},
                {"name": "name", "datatype": "BYTES", "shape": [1], "data": ["kiwi"]},
            ]})
        assert reply.status_code == 200, reply.text
        assert {o["name"]: o["data"] for o in reply.json()["outputs"]} == {"total": [9.0], "label": ["KIWI!"]}

        # Bad input: 400 naming the field.
        bad = httpx.post(f"{url}/v2/models/shop-scorer/infer", timeout=30, json={
            "inputs": [
                {"name": "price", "datatype": "FP64", "shape": [1], "data": [3.0]},
                {"name": "quantity", "datatype": "FP32", "shape": [1], "data": [3.0]},
                {"name": "name", "datatype": "BYTES", "shape": [1], "data": ["kiwi"]},
            ]})
        assert bad.status_code == 400
        assert "quantity" in bad.json()["error"]
        # The user's predict raising: a clear 500 at once, and the server keeps serving.
        inputs[2].set_data_from_numpy(np.array([b"boom"] * len(ROWS), dtype=object))
        started = time.monotonic()
        with pytest.raises(InferenceServerException, match="ValueError: boom is not a product name"):
            client.infer("shop-scorer", inputs)
        assert time.monotonic() - started < 10
        assert httpx.get(f"{url}/v2/models/shop-scorer/ready", timeout=10).status_code == 200
        client.close()
    finally:
        code = serve.stop()
    assert code == 0, serve.text()
    assert wait_dead(child), f"pyfunc predictor {child} outlived kubemind serve"

    # A second run initializes from the node cache: nothing is downloaded. Killed with SIGKILL,
    # `kubemind serve` leaves no child behind.
    downloads = mlflow_server.artifact_downloads()
    again = Serve(tmp_path, "--model", "models:/shop-scorer@champion", "--http_port", "0",
                  "--grpc_port", "0", tag="again")
    try:
        again.wait_ready()
        assert "nothing downloaded" in again.text()
        assert mlflow_server.artifact_downloads() == downloads
        (child,) = again.child_pids
        assert pid_alive(child)
    finally:
        again.stop(signal.SIGKILL)
    assert wait_dead(child), f"pyfunc predictor {child} outlived a SIGKILLed kubemind serve"


def test_scikit_learn_model_through_its_pyfunc_flavor(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import mlflow.pyfunc
    import tritonclient.http as triton_http

    folder, features = save_sklearn_model(tmp_path / "sk-model")
    registered = register(capsys, "sk-clf", str(folder), "--flavor", "pyfunc", "--alias", "champion")
    assert [t["name"] for t in registered["signature"]["inputs"]] == ["x1", "x2"]
    serve = Serve(tmp_path, "--model", "models:/sk-clf@champion", "--http_port", "0", "--grpc_port", "0")
    try:
        serve.wait_ready()
        client = triton_http.InferenceServerClient(serve.http_url.removeprefix("http://"))
        inputs = []
        for column in ("x1", "x2"):
            tensor = triton_http.InferInput(column, [len(features)], "FP64")
            tensor.set_data_from_numpy(features[column].to_numpy())
            inputs.append(tensor)
        result = client.infer("sk-clf", inputs)
        assert result.get_response()["model_version"] == registered["version"]
        expected = mlflow.pyfunc.load_model(str(folder)).predict(features)
        np.testing.assert_array_equal(result.as_numpy("output"), np.asarray(expected))
        client.close()
    finally:
        assert serve.stop() == 0, serve.text()


def test_a_flavor_without_a_runtime_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "embedder"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 8}\n')
    register(capsys, "embedder", str(folder), "--flavor", "sentence-transformers", "--alias", "champion")
    done = subprocess.run(
        [sys.executable, "-m", "kubemind.cli", "serve", "--model", "models:/embedder@champion",
         "--http_port", "0", "--grpc_port", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "kubemind serve" in line]
    assert "'sentence-transformers'" in line
    for flavor in ("onnx", "triton-repo", "hf-llm", "pyfunc"):
        assert flavor in line


def run_on_terminal(*argv: str) -> tuple[int, str, str]:
    """Run a command with stderr on a pseudo-terminal; (exit code, stdout, terminal text)."""
    import pty
    import threading

    leader, follower = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the last writer closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=follower, timeout=180)
    finally:
        os.close(follower)
        reader.join(10)
        os.close(leader)
    return done.returncode, done.stdout.decode(), b"".join(chunks).decode(errors="replace")


def test_register_and_initialize_show_progress_on_a_terminal_only(tmp_path: Path) -> None:
    folder = save_shop_model(tmp_path / "shop-model")
    code, out, terminal = run_on_terminal(
        sys.executable, "-m", "kubemind.cli", "models", "register", "progress-model", str(folder),
        "--flavor", "pyfunc",
    )
    assert code == 0, terminal
    assert "upload shop-model" in terminal and "100%" in terminal
    uri = json.loads(out)["uri"]

    code, _, terminal = run_on_terminal(
        sys.executable, "-m", "kubemind_registry.initializer", uri, str(tmp_path / "on-terminal"),
    )
    assert code == 0, terminal
    assert f"download {uri}" in terminal and "100%" in terminal

    quiet = subprocess.run(
        [sys.executable, "-m", "kubemind_registry.initializer", uri, str(tmp_path / "piped")],
        capture_output=True, text=True, timeout=180,
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "100%" not in quiet.stderr
