"""Drift end to end with real parts: a reference profile computed at `kubemind models register
--reference` (embedded MLflow store) and downloaded with the version; the `simple` server's
payload logger feeding the drift service; an unshifted stream stays quiet, a shifted one raises
the score past its threshold; `kubemind drift report` writes an HTML report that headless
Chromium renders with every figure."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubemind.cli import main as kubemind_main
from kubemind.drift.features import rows_of
from kubemind.drift.statistics import FeatureProfile, Thresholds, score
from kubemind.processes import ServerProcess, running_server
from kubemind_registry.initializer import main as initializer_main
from tests.component.registry_fixtures import build_onnx_model

ROWS = 4  # rows per request
WINDOW = 120  # rows: 30 requests fill it


def _body(rng: np.random.Generator, shift: float = 0.0) -> dict[str, Any]:
    first = np.rint(rng.normal(100 + shift, 10, (ROWS, 16))).astype(np.int32)
    second = np.rint(rng.normal(0, 5, (ROWS, 16))).astype(np.int32)
    return {"inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [ROWS, 16], "data": first.ravel().tolist()},
        {"name": "INPUT1", "datatype": "INT32", "shape": [ROWS, 16], "data": second.ravel().tolist()},
    ]}  # fmt: skip


@pytest.fixture
def reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """`models register --reference` on the embedded store, then the version downloaded as the
    storage initializer does: the folder the drift service reads its profile from."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("KUBEMIND_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    data = tmp_path / "reference.jsonl"
    data.write_text("".join(json.dumps(_body(rng)) + "\n" for _ in range(100)))
    model = build_onnx_model(tmp_path / "model")
    assert kubemind_main(["models", "register", "simple", str(model), "--flavor", "onnx", "--reference", str(data)]) == 0
    capsys.readouterr()
    dest = tmp_path / "downloaded"
    assert initializer_main(["models:/simple/1", str(dest)]) == 0
    assert (dest / "drift-reference.json").exists()
    return dest


def _drift_metrics(url: str) -> dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            found[sample.name + json.dumps(sample.labels, sort_keys=True)] = sample.value
    return found


def _send(server: ServerProcess, rng: np.random.Generator, count: int, shift: float) -> None:
    for _ in range(count):
        assert httpx.post(f"{server.http_url}/v2/models/simple/infer", json=_body(rng, shift), timeout=10).status_code == 200


def _wait_events(drift_url: str, requests: int, timeout: float = 60) -> dict[str, float]:
    key = 'kubemind_drift_events_total{"inferenceservice": "simple", "model": "simple", "type": "request"}'
    deadline = time.monotonic() + timeout
    while (metrics := _drift_metrics(drift_url)).get(key, 0) < requests:
        assert time.monotonic() < deadline, f"the drift service got {metrics.get(key, 0)} of {requests} request events"
        time.sleep(0.1)
    return metrics


def _detected(metrics: dict[str, float]) -> dict[str, float]:
    return {json.loads(k[len("kubemind_drift_detected"):])["feature"]: v for k, v in metrics.items() if k.startswith("kubemind_drift_detected{")}


def test_a_shifted_stream_drifts_an_unshifted_one_does_not_and_the_report_renders(reference: Path, tmp_path: Path) -> None:
    drift_args = ["--reference", str(reference), "--window_size", str(WINDOW), "--min_window", "30"]
    with running_server("kubemind.drift", drift_args, tmp_path / "drift.log") as drift:
        drift_url = drift.http_url
        args = ["--model_name", "simple", "--log_url", f"{drift_url}/", "--log_mode", "all"]
        with running_server("kubemind_predictors.simple", args, tmp_path / "simple.log") as server:
            rng = np.random.default_rng(2)
            _send(server, rng, WINDOW // ROWS, shift=0)
            quiet = _detected(_wait_events(drift_url, WINDOW // ROWS))
            _send(server, rng, WINDOW // ROWS, shift=25)  # fills the window with shifted rows
            shifted_metrics = _wait_events(drift_url, 2 * WINDOW // ROWS)
            shifted = _detected(shifted_metrics)
        output = tmp_path / "report.html"
        assert kubemind_main(["drift", "report", "simple", "--service_url", drift_url, "--output", str(output)]) == 0

    inputs = [f"INPUT0[{i}]" for i in range(16)] + [f"INPUT1[{i}]" for i in range(16)]
    assert set(inputs) <= set(quiet) and set(quiet) == set(shifted)
    assert not any(quiet.values()), {k: v for k, v in quiet.items() if v}
    assert all(shifted[f"INPUT0[{i}]"] == 1 for i in range(16))  # shifted by 2.5 standard deviations
    assert not any(shifted[f"INPUT1[{i}]"] for i in range(16))  # untouched
    assert shifted_metrics['kubemind_drift_drifted_features_ratio{"inferenceservice": "simple", "model": "simple"}'] >= 0.4
    psi = {k: v for k, v in shifted_metrics.items() if k.startswith("kubemind_drift_psi{") and '"INPUT0[0]"' in k}
    assert next(iter(psi.values())) > 0.25

    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom", output.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    figures = re.findall(r"<img class=\"drift-figure\" data-feature=\"([^\"]+)\"", dom)
    assert set(inputs) <= set(figures)
    loaded = re.search(r'data-figures-loaded="(\d+)"', dom)
    assert loaded is not None and int(loaded.group(1)) == len(figures)  # every plot decoded as an image
    assert re.search(r"<td>INPUT0\[0\]</td>.*?<td>DRIFT</td>", dom)


def test_llm_payloads_give_token_length_features_and_other_text_drifts() -> None:
    """Prompt and completion lengths of OpenAI payloads: prompts from another domain (long
    legal text instead of short questions) drift; more short questions do not."""
    rng = np.random.default_rng(3)

    def chat(words: int) -> dict[str, Any]:
        return {"model": "m", "messages": [{"role": "user", "content": " ".join(["word"] * words)}]}

    reference = [row["prompt_tokens"] for _ in range(400) for row in rows_of(chat(int(rng.integers(5, 15))))]
    same = [row["prompt_tokens"] for _ in range(100) for row in rows_of(chat(int(rng.integers(5, 15))))]
    legal = [row["prompt_tokens"] for _ in range(100) for row in rows_of(chat(int(rng.integers(60, 200))))]
    profile = FeatureProfile.of("prompt_tokens", reference)
    assert rows_of({"choices": [{"message": {"content": "a b"}}], "usage": {"completion_tokens": 7}}) == [{"completion_tokens": 7.0}]
    quiet, shifted = score(profile, same, Thresholds()), score(profile, legal, Thresholds())
    assert quiet is not None and shifted is not None
    assert (quiet.method, quiet.drifted, shifted.drifted) == ("ks", False, True)
    large = score(profile, legal * 12, Thresholds())  # 1200 values: a distance, not a test
    assert large is not None and (large.method, large.drifted) == ("wasserstein", True)
