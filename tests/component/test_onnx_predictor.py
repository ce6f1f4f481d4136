"""The ONNX Runtime predictor serves what was registered: a model built here, registered in
MLflow (embedded store) with `kubemind models register --flavor onnx`, initialized with the
storage initializer, served by `python -m kubemind_predictors.onnx`, called with the stock
`tritonclient.http` client; answers equal ONNX Runtime's own, the metadata reports the MLflow
version, concurrent requests share executions, and bad inputs get a 400 naming the tensor."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from kubemind.processes import ServerProcess, running_server

MODEL = "onnx-clf"
FEATURES, CLASSES = 4, 3


def build_classifier(folder: Path) -> Path:
    """MatMul + Add + Softmax over a dynamic batch: logits and probabilities."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    weights = numpy_helper.from_array(rng.standard_normal((FEATURES, CLASSES)).astype("float32"), "W")
    bias = numpy_helper.from_array(rng.standard_normal(CLASSES).astype("float32"), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "W"], ["scaled"]),
         helper.make_node("Add", ["scaled", "B"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)],
        "classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "classifier.onnx"))
    return folder


@dataclass
class Served:
    server: ServerProcess
    version: str
    model_file: Path

    def client(self) -> triton_http.InferenceServerClient:
        return triton_http.InferenceServerClient(self.server.http_url.removeprefix("http://"), concurrency=8)

    def reference(self, features: np.ndarray) -> dict[str, np.ndarray]:
        import onnxruntime as ort

        session = ort.InferenceSession(str(self.model_file), providers=["CPUExecutionProvider"])
        logits, probabilities = session.run(["logits", "probabilities"], {"features": features})
        return {"logits": logits, "probabilities": probabilities}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from kubemind.cli import main as kubemind_main
    from kubemind_registry.initializer import main as initializer_main

    root = tmp_path_factory.mktemp("onnx")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setenv("KUBEMIND_HOME", str(root / "kubemind-home"))
        patch.chdir(root)
        model = build_classifier(root / "export")
        # Two versions, so the served one is visibly the registry's, not a default "1".
        assert kubemind_main(["models", "register", MODEL, str(model), "--flavor", "onnx"]) == 0
        assert kubemind_main(["models", "register", MODEL, str(model), "--flavor", "onnx",
                              "--alias", "champion"]) == 0
        dest = root / "mnt" / "models"
        assert initializer_main([f"models:/{MODEL}@champion", str(dest)]) == 0
    version = json.loads((dest / "kubemind-model.json").read_text())["version"]
    args = ["--model_name", MODEL, "--model_dir", str(dest), "--max_queue_delay_ms", "50",
            "--max_batch_size", "16"]
    with running_server("kubemind_predictors.onnx", args, root / "server.log") as server:
        yield Served(server, version, dest / "classifier.onnx")


def test_answers_equal_onnxruntime_over_the_stock_client(served: Served) -> None:
    features = np.random.default_rng(1).standard_normal((5, FEATURES)).astype(np.float32)
    expected = served.reference(features)
    client = served.client()
    for binary in (True, False):
        tensor = triton_http.InferInput("features", list(features.shape), "FP32")
        tensor.set_data_from_numpy(features, binary_data=binary)
        outputs = [triton_http.InferRequestedOutput(n, binary_data=binary) for n in ("logits", "probabilities")]
        result = client.infer(MODEL, [tensor], outputs=outputs)
        for name, want in expected.items():
            np.testing.assert_allclose(result.as_numpy(name), want, rtol=1e-6, atol=1e-7)
        assert result.get_response()["model_version"] == served.version


def test_metadata_reports_the_registered_signature_and_mlflow_version(served: Served) -> None:
    client = served.client()
    assert served.version == "2"
    metadata = client.get_model_metadata(MODEL)
    assert metadata["versions"] == [served.version]
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, FEATURES]}]
    assert [o["name"] for o in metadata["outputs"]] == ["logits", "probabilities"]
    assert client.is_model_ready(MODEL, served.version)
    assert client.get_model_metadata(MODEL, served.version)["name"] == MODEL
    with pytest.raises(InferenceServerException):
        client.get_model_metadata(MODEL, "1")  # registered, but not the version in the folder
    config = client.get_model_config(MODEL)
    assert config["max_batch_size"] == 16
    assert config["input"][0]["dims"] == [FEATURES]  # Triton leaves out the batch dimension


def test_concurrent_requests_are_batched_and_queue_time_is_reported(served: Served) -> None:
    client = served.client()
    before = client.get_inference_statistics(MODEL)["model_stats"][0]
    rows = [np.full((1, FEATURES), float(i), dtype=np.float32) for i in range(8)]

    # tritonclient.http is gevent-based: concurrency comes from async_infer, not from threads.
    pending = []
    for features in rows:
        tensor = triton_http.InferInput("features", [1, FEATURES], "FP32")
        tensor.set_data_from_numpy(features)
        pending.append(client.async_infer(MODEL, [tensor]))
    answers = [request.get_result().as_numpy("logits") for request in pending]
    for features, answer in zip(rows, answers, strict=True):
        np.testing.assert_allclose(answer, served.reference(features)["logits"], rtol=1e-6, atol=1e-7)

    after = client.get_inference_statistics(MODEL)["model_stats"][0]
    inferences = int(after["inference_count"]) - int(before["inference_count"])
    executions = int(after["execution_count"]) - int(before["execution_count"])
    assert inferences == 8
    assert executions < inferences, after
    assert int(after["inference_stats"]["queue"]["ns"]) > int(before["inference_stats"]["queue"]["ns"])
    metrics = httpx.get(f"{served.server.http_url}/metrics", timeout=10).text
    assert f'kubemind_stage_duration_seconds_count{{model="{MODEL}",stage="queue"}}' in metrics


def test_a_bad_input_gets_400_naming_the_tensor_and_batched_neighbours_still_answer(served: Served) -> None:
    url = f"{served.server.http_url}/v2/models/{MODEL}/infer"

    def good() -> httpx.Response:
        return httpx.post(url, timeout=10, json={"inputs": [
            {"name": "features", "datatype": "FP32", "shape": [1, FEATURES], "data": [1.0] * FEATURES}]})

    def bad() -> httpx.Response:
        return httpx.post(url, timeout=10, json={"inputs": [
            {"name": "features", "datatype": "FP32", "shape": [1, FEATURES + 1], "data": [1.0] * (FEATURES + 1)}]})

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = [f.result() for f in [pool.submit(good), pool.submit(bad), pool.submit(good), pool.submit(bad)]]
    assert [r.status_code for r in replies] == [200, 400, 200, 400], [r.text for r in replies]
    assert "features" in replies[1].json()["error"]
    wrong_type = httpx.post(url, timeout=10, json={"inputs": [
        {"name": "features", "datatype": "INT32", "shape": [1, FEATURES], "data": [1] * FEATURES}]})
    assert wrong_type.status_code == 400 and "features" in wrong_type.json()["error"]
    unknown = httpx.post(url, timeout=10, json={"inputs": [
        {"name": "pixels", "datatype": "FP32", "shape": [1, FEATURES], "data": [1.0] * FEATURES}]})
    assert unknown.status_code == 400 and "pixels" in unknown.json()["error"]


def test_a_folder_without_kubemind_metadata_is_served_from_the_graph(tmp_path: Path) -> None:
    folder = build_classifier(tmp_path / "plain")
    with running_server(
        "kubemind_predictors.onnx",
        ["--model_name", "plain", "--model_dir", str(folder), "--versions", "3"],
        tmp_path / "server.log",
    ) as server:
        metadata = httpx.get(f"{server.http_url}/v2/models/plain", timeout=10).json()
        assert metadata["versions"] == ["3"]
        assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, FEATURES]}]
        assert metadata["outputs"][1] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, CLASSES]}
        reply = httpx.post(f"{server.http_url}/v2/models/plain/versions/3/infer", timeout=10, json={
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [2, FEATURES], "data": [0.5] * 8}]})
        assert reply.status_code == 200, reply.text
        probabilities = np.array(reply.json()["outputs"][1]["data"]).reshape(2, CLASSES)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_a_folder_with_labels_counts_each_rows_top_class_for_the_quality_gate(tmp_path: Path) -> None:
    """labels.txt makes the model a classifier: each answered row's top-1 label is counted in
    kubemind_prediction_class_total (what the release controller's PSI gate compares)."""
    folder = build_classifier(tmp_path / "labelled")
    (folder / "labels.txt").write_text("cat\ndog\nbird\n")
    features = np.random.default_rng(3).standard_normal((40, FEATURES)).astype(np.float32)
    with running_server("kubemind_predictors.onnx", ["--model_name", "labelled", "--model_dir", str(folder)],
                        tmp_path / "server.log") as server:
        reply = httpx.post(f"{server.http_url}/v2/models/labelled/infer", timeout=10, json={
            "inputs": [{"name": "features", "datatype": "FP32", "shape": list(features.shape),
                        "data": features.ravel().tolist()}]})
        assert reply.status_code == 200, reply.text
        metrics = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    logits = np.array(reply.json()["outputs"][0]["data"]).reshape(-1, CLASSES)
    expected = np.bincount(np.argmax(logits, axis=1), minlength=CLASSES)
    counted = {}
    for line in metrics.splitlines():
        if line.startswith("kubemind_prediction_class_total{") and 'model="labelled"' in line:
            label = line.split('class="', 1)[1].split('"', 1)[0]
            counted[label] = float(line.rsplit(" ", 1)[1])
    assert counted == {name: float(n) for name, n in zip(("cat", "dog", "bird"), expected, strict=True) if n}
    assert sum(counted.values()) == len(features)
