"""The stock Triton clients work unchanged against kubemind's `simple`, over HTTP and gRPC."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubemind.processes import ServerProcess

PROBE = Path(__file__).with_name("stock_client_probe.py")
INPUT0 = np.arange(16).reshape(1, 16)
INPUT1 = np.full((1, 16), 3)
EXPECTED = [(INPUT0 + INPUT1).tolist(), (INPUT0 - INPUT1).tolist()]


@pytest.fixture(scope="module")
def seen(simple_server: ServerProcess) -> dict[str, Any]:
    """What tritonclient.http and tritonclient.grpc saw, from a process without kserve."""
    completed = subprocess.run(
        [sys.executable, str(PROBE), f"127.0.0.1:{simple_server.http_port}", simple_server.grpc_address, "simple"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_health(seen: dict[str, Any], transport: str) -> None:
    assert seen[transport]["live"] is True
    assert seen[transport]["ready"] is True
    assert seen[transport]["model_ready"] is True


def test_infer_over_http_binary_json_and_versioned(seen: dict[str, Any]) -> None:
    assert seen["http"]["binary_outputs"] == EXPECTED
    assert seen["http"]["json_outputs"] == EXPECTED
    assert seen["http"]["versioned_outputs"] == EXPECTED


def test_infer_over_grpc_raw(seen: dict[str, Any]) -> None:
    assert seen["grpc"]["raw_outputs"] == EXPECTED


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_model_metadata_lists_inputs_outputs_and_versions(seen: dict[str, Any], transport: str) -> None:
    metadata = seen[transport]["model_metadata"]
    assert metadata["name"] == "simple"
    assert metadata["versions"] == ["1", "2"]
    tensors = {t["name"]: t for t in metadata["inputs"] + metadata["outputs"]}
    assert set(tensors) == {"INPUT0", "INPUT1", "OUTPUT0", "OUTPUT1"}
    for tensor in tensors.values():
        assert tensor["datatype"] == "INT32"
        assert [int(d) for d in tensor["shape"]] == [-1, 16]


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_server_metadata_lists_extensions(seen: dict[str, Any], transport: str) -> None:
    metadata = seen[transport]["server_metadata"]
    assert metadata["name"] == "kubemind"
    assert {"model_configuration", "statistics", "model_repository", "binary_tensor_data"} <= set(metadata["extensions"])


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_model_config_like_triton(seen: dict[str, Any], transport: str) -> None:
    config = seen[transport]["model_config"]
    config = config.get("config", config)  # gRPC wraps it in ModelConfigResponse
    assert config["name"] == "simple"
    assert int(config["max_batch_size"]) == 8
    inputs = {t["name"]: t for t in config["input"]}
    assert inputs["INPUT0"]["data_type"] == "TYPE_INT32"
    assert [int(d) for d in inputs["INPUT0"]["dims"]] == [16]  # batch dimension left out, as Triton does


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_statistics_count_inferences(seen: dict[str, Any], transport: str) -> None:
    (stats,) = seen[transport]["statistics"]["model_stats"]
    assert stats["name"] == "simple"
    assert int(stats["inference_count"]) >= 1
    success = stats["inference_stats"]["success"]
    assert int(success["count"]) >= 1 and int(success["ns"]) > 0


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_repository_index_lists_every_version(seen: dict[str, Any], transport: str) -> None:
    index = seen[transport]["repository_index"]
    index = index.get("models", index) if isinstance(index, dict) else index
    assert sorted((m["name"], m["version"], m["state"]) for m in index) == [
        ("simple", "1", "READY"),
        ("simple", "2", "READY"),
    ]


def test_errors_reach_stock_clients(seen: dict[str, Any]) -> None:
    assert seen["http"]["unknown_model"]["status"] == "404"
    assert "no-such-model" in seen["http"]["unknown_model"]["message"]
    assert seen["http"]["unknown_version"]["status"] == "404"
    assert "Request for unknown model: 'simple' version 99 is not found" in seen["http"]["unknown_version"]["message"]
    assert seen["grpc"]["unknown_model"]["status"] == "StatusCode.NOT_FOUND"
    assert seen["grpc"]["wrong_datatype"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "input 'INPUT0'" in seen["grpc"]["wrong_datatype"]["message"]


def test_stream_infer_answers_every_request_and_names_unknown_models(seen: dict[str, Any]) -> None:
    answers = seen["grpc"]["stream"]
    assert [a["id"] for a in answers] == ["error", "s0", "s1", "s2"]
    for answer in answers[1:]:
        assert answer["OUTPUT0"] == EXPECTED[0]
    assert "Request for unknown model: 'no-such-model' is not found" in answers[0]["error"]


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_system_shared_memory_round_trip(seen: dict[str, Any], transport: str) -> None:
    shared = seen[transport]["shared_memory"]
    assert shared["outputs"] == EXPECTED
    status = shared["status"]
    regions = status if transport == "http" else list(status["regions"].values())
    assert sorted(r["name"] for r in regions) == ["input_data", "output_data"]
    assert "outside shared memory region 'input_data'" in shared["overrun"]["message"]
    assert "'no-such-region' is not registered" in shared["missing"]["message"]
    assert shared["cuda_status"] in ([], {})
    assert shared["cuda_unregister"]["status"] == "ok"
    assert "CUDA shared memory is not supported" in shared["cuda_register"]["message"]
