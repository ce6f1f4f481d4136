"""The flavor -> runtime table, the sample calls `kubemind serve --model` prints, the one-line
busy-port message and `kubemind --version`."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys

import pytest

from kubemind import __version__
from kubemind.local.serve_model import sample_calls
from kubemind.runtimes import RUNTIMES, NoRuntime, runtime_for
from kubemind_registry.served import Signature, TensorSignature
from kubemind_registry.signatures import FLAVORS


def kubemind(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubemind.cli", *argv], capture_output=True, text=True, timeout=120
    )


def test_every_runtime_serves_a_registered_flavor() -> None:
    assert set(RUNTIMES) <= set(FLAVORS)
    assert runtime_for("pyfunc").module == "kubemind_predictors.pyfunc"
    assert runtime_for("onnx").args("clf", "/mnt/models") == ["--model_name", "clf", "--model_dir", "/mnt/models"]
    assert runtime_for("triton-repo").args("repo", "/mnt/models") == ["--model_dir", "/mnt/models"]
    llm = runtime_for("hf-llm")
    assert ("HF_HUB_OFFLINE", "1") in llm.env
    assert "--enforce_eager" in llm.local_args


def test_a_flavor_without_runtime_names_it_and_the_runtimes() -> None:
    with pytest.raises(NoRuntime) as caught:
        runtime_for("sentence-transformers")
    message = str(caught.value)
    assert "'sentence-transformers'" in message and "\n" not in message
    for flavor, runtime in RUNTIMES.items():
        assert flavor in message and runtime.module in message


SIGNATURE = Signature(
    inputs=(
        TensorSignature("price", "FP64", (-1,)),
        TensorSignature("pixels", "UINT8", (-1, 2, 3)),
        TensorSignature("name", "BYTES", (-1,)),
        TensorSignature("flag", "BOOL", (-1,)),
    ),
    outputs=(TensorSignature("total", "FP64", (-1,)),),
)


def test_sample_calls_follow_the_registered_signature() -> None:
    text = sample_calls("shop", "7", SIGNATURE, "http://127.0.0.1:9000")
    curl = next(line for line in text.splitlines() if line.startswith("curl -s -X POST"))
    assert "/v2/models/shop/versions/7/infer" in curl
    body = json.loads(shlex.split(curl.removesuffix("; echo"))[-1])
    assert [(t["name"], t["datatype"], t["shape"], len(t["data"])) for t in body["inputs"]] == [
        ("price", "FP64", [1], 1), ("pixels", "UINT8", [1, 2, 3], 6),
        ("name", "BYTES", [1], 1), ("flag", "BOOL", [1], 1),
    ]
    # The tritonclient script: absolute interpreter, valid Python.
    assert f"{sys.executable} - <<'PY'" in text
    script = re.search(r"<<'PY'\n(.*?)\nPY", text, re.S)[1]  # type: ignore[index]
    compile(script, "sample", "exec")
    assert "model_version='7'" in script


def test_version_is_printed_from_the_one_place() -> None:
    done = kubemind("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"kubemind {__version__}"


@pytest.fixture()
def busy_port() -> object:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("mode", ["services", "model"])
def test_a_busy_port_is_one_line_naming_it(busy_port: int, mode: str) -> None:
    if mode == "services":
        done = kubemind("serve", "--only", "simple", "--port_base", str(busy_port))
        option = "--port_base 0"
    else:  # checked before the registry is asked anything
        done = kubemind("serve", "--model", "models:/nothing@here", "--http_port", str(busy_port))
        option = "--http_port 0"
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(busy_port) in lines[0] and option in lines[0]
