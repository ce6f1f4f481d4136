"""The image transformer hands its pixel tensor to the predictor through system shared memory
(`--predictor_shared_memory`), with real processes: the transformer, kubemind's Triton predictor
and a real Triton (and Triton directly, as components/triton-direct deploys it).

Answers equal the wire's; concurrent requests get their own; the regions are registered while
serving, no segment name is left in /dev/shm, and stopping unregisters them; a predictor that
cannot open the segment (its own /dev/shm, as on another host) or that forgot it (restarted)
gets the wire and every request still succeeds.
"""

from __future__ import annotations

import base64
import concurrent.futures
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from kubemind.processes import (
    ServerProcess,
    die_with_parent,
    free_port,
    start_server,
    wait_for_health,
    wait_until_ready,
)
from kubemind_predictors.triton.launcher import TritonServerProcess
from tests.component.serve_fixtures import Serve
from tests.component.triton_fixtures import (
    photo,
    require_triton,
    running_predictor,
    running_transformer,
    running_triton,
    triton_connection_args,
)

MODEL = "efficientnet_lite0"
SHM_DIR = Path("/dev/shm")
PHOTOS = ("coffee", "chelsea", "grace_hopper", "astronaut")


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServerProcess]:
    with running_triton(tmp_path_factory.mktemp("triton"), [MODEL]) as server:
        yield server


@pytest.fixture(scope="module")
def predictor(triton: TritonServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_predictor(triton, tmp_path_factory.mktemp("predictor")) as server:
        yield server


@pytest.fixture(scope="module")
def wire(predictor: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_transformer(predictor.grpc_address, tmp_path_factory.mktemp("wire")) as server:
        yield server


@pytest.fixture(scope="module")
def shared(predictor: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Three slots: the concurrency test sends more requests at once than that."""
    workdir = tmp_path_factory.mktemp("shared")
    args = ("--predictor_shared_memory", "true", "--predictor_shared_memory_slots", "3")
    with running_transformer(predictor.grpc_address, workdir, *args) as server:
        yield server


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    return {name: photo(name) for name in PHOTOS}


def classify(server: ServerProcess | str, batch: list[bytes]) -> dict[str, np.ndarray]:
    """The transformer's answer (class ids, probabilities) for `batch`; `server` or its REST URL."""
    url = server if isinstance(server, str) else server.http_url
    encoded = [base64.b64encode(image).decode("ascii") for image in batch]
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(encoded)], "data": encoded}]}
    response = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=body, timeout=60)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    return {
        "class_ids": np.array(outputs["class_ids"]["data"]).reshape(outputs["class_ids"]["shape"]),
        "probabilities": np.array(outputs["probabilities"]["data"]).reshape(outputs["probabilities"]["shape"]),
    }


def regions_of(server: str, transformer_pid: int) -> list[dict[str, object]]:
    """The shared-memory regions a transformer process registered with `server` (its REST URL)."""
    response = httpx.get(f"{server}/v2/systemsharedmemory/status", timeout=10)
    assert response.status_code == 200, response.text
    prefix = f"kubemind-image-{transformer_pid}-"
    return [region for region in response.json() if str(region["name"]).startswith(prefix)]


def segments_of(transformer_pid: int) -> list[str]:
    return sorted(p.name for p in SHM_DIR.glob(f"kubemind-image-{transformer_pid}-*"))


def assert_same_answers(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(got["class_ids"], expected["class_ids"])
    # Triton's dynamic batcher may run a request with others: the same pixels, another batch.
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], rtol=1e-4, atol=1e-6)


def test_answers_through_shared_memory_equal_the_wire(
    wire: ServerProcess, shared: ServerProcess, predictor: ServerProcess, images: dict[str, bytes]
) -> None:
    batch = [images["coffee"], images["chelsea"], images["grace_hopper"]]

    expected, got = classify(wire, batch), classify(shared, batch)

    assert_same_answers(got, expected)
    assert expected["class_ids"][0][0] != expected["class_ids"][1][0]  # different photos, different answers
    # It did go through shared memory: the predictor holds the transformer's region, of one
    # max-batch slot (32 x 224 x 224 x 3 bytes), and the wire transformer registered none.
    registered = regions_of(predictor.http_url, shared.pid)
    assert registered, "the shared-memory transformer registered no region with the predictor"
    assert {region["byte_size"] for region in registered} == {32 * 224 * 224 * 3}
    assert regions_of(predictor.http_url, wire.pid) == []
    assert "cannot take shared memory" not in shared.log()
    # Registered segments are unlinked at once (the mappings keep the memory): nothing to leak.
    assert segments_of(shared.pid) == []


def test_concurrent_requests_get_their_own_answers(
    wire: ServerProcess, shared: ServerProcess, predictor: ServerProcess, images: dict[str, bytes]
) -> None:
    """24 requests, 8 at a time, over 3 slots: slots are reused and some requests overflow to the
    wire; every answer is the one for that request's own images."""
    batches = [[images[PHOTOS[(i + j) % len(PHOTOS)]] for j in range(1 + i % 3)] for i in range(24)]
    expected = {name: classify(wire, [image])["class_ids"][0] for name, image in images.items()}
    by_bytes = {image: name for name, image in images.items()}

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda batch: classify(shared, batch), batches))

    for batch, answer in zip(batches, answers, strict=True):
        want = np.stack([expected[by_bytes[image]] for image in batch])
        np.testing.assert_array_equal(answer["class_ids"], want)
    assert 1 <= len(regions_of(predictor.http_url, shared.pid)) <= 3


def test_stop_unregisters_the_regions_and_leaves_no_segment(
    predictor: ServerProcess, images: dict[str, bytes], tmp_path: Path
) -> None:
    with running_transformer(predictor.grpc_address, tmp_path, "--predictor_shared_memory", "true") as server:
        classify(server, [images["coffee"]])
        pid = server.pid
        assert regions_of(predictor.http_url, pid), "no region registered while serving"

    assert server.process.returncode == 0, server.log()
    assert regions_of(predictor.http_url, pid) == []
    assert segments_of(pid) == []


def test_triton_itself_reads_the_tensor_from_shared_memory(
    triton: TritonServerProcess, wire: ServerProcess, images: dict[str, bytes], tmp_path: Path
) -> None:
    """components/triton-direct: the transformer calls Triton's own runtime, which implements
    the extension natively (and keeps its mapping after the name is unlinked)."""
    batch = [images["astronaut"], images["coffee"]]
    with running_transformer(triton.grpc_url, tmp_path, "--predictor_shared_memory", "true") as server:
        for _ in range(3):
            assert_same_answers(classify(server, batch), classify(wire, batch))
        assert regions_of(triton.http_url, server.pid), "Triton holds no region of the transformer"
        pid = server.pid
    assert regions_of(triton.http_url, pid) == []
    assert segments_of(pid) == []


def test_restarted_predictor_gets_the_wire_then_new_regions(
    triton: TritonServerProcess, wire: ServerProcess, images: dict[str, bytes], tmp_path: Path
) -> None:
    """A predictor restarted on the same ports (as `kubemind serve` restarts one) has forgotten
    the regions: the next request goes over the wire, the ones after it through new regions."""
    batch = [images["chelsea"]]
    expected = classify(wire, batch)
    args = [*triton_connection_args(triton), "--request_timeout_seconds", "5"]
    first = start_server("kubemind_predictors.triton", args, tmp_path / "first.log")
    try:
        with running_transformer(first.grpc_address, tmp_path, "--predictor_shared_memory", "true") as server:
            assert_same_answers(classify(server, batch), expected)
            before = {r["name"] for r in regions_of(first.http_url, server.pid)}
            assert before
            first.stop()
            again = start_server("kubemind_predictors.triton", args, tmp_path / "second.log",
                                 ports=(first.http_port, first.grpc_port))  # fmt: skip
            try:
                # the transformer's channel reconnects (its readiness asks the predictor)
                wait_for_health(f"{server.http_url}/v2/models/{MODEL}/ready", server.process, 30, server.log_path)
                for _ in range(4):
                    assert_same_answers(classify(server, batch), expected)
                after = {r["name"] for r in regions_of(again.http_url, server.pid)}
            finally:
                again.stop()
            assert after and not after & before, (before, after)
            assert server.log().count("lost shared memory region") == 1
    finally:
        first.stop()


def _own_shm_namespace_works() -> bool:
    probe = ["unshare", "--mount", "--map-root-user", "sh", "-c", "mount -t tmpfs tmpfs /dev/shm"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture
def elsewhere(predictor: ServerProcess, tmp_path: Path) -> Iterator[ServerProcess]:
    """A shared-memory transformer with its own /dev/shm (a private tmpfs in its own mount
    namespace): the predictor cannot open its segment, as on another host."""
    if not _own_shm_namespace_works():
        pytest.skip("unshare cannot give a process its own /dev/shm here (user namespaces off)")
    http_port, grpc_port = free_port(), free_port()
    log_path = tmp_path / "transformer.log"
    command = [
        "unshare", "--mount", "--map-root-user", "sh", "-c", 'mount -t tmpfs tmpfs /dev/shm && exec "$@"', "sh",
        sys.executable, "-m", "kubemind_transformers.image", "--host", "127.0.0.1", "--http_port", str(http_port),
        "--grpc_port", str(grpc_port), "--model_name", MODEL, "--predictor_host", predictor.grpc_address,
        "--predictor_shared_memory", "true",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ),
                                   preexec_fn=die_with_parent())  # fmt: skip
    server = ServerProcess(process, http_port, grpc_port, log_path)
    try:
        wait_until_ready(server.http_url, process, 60, log_path)
        yield server
    finally:
        server.stop()


def test_a_predictor_that_cannot_open_the_segment_gets_the_wire(
    elsewhere: ServerProcess, wire: ServerProcess, predictor: ServerProcess, images: dict[str, bytes]
) -> None:
    batch = [images["grace_hopper"], images["coffee"]]
    expected = classify(wire, batch)

    for _ in range(4):
        assert_same_answers(classify(elsewhere, batch), expected)

    assert regions_of(predictor.http_url, elsewhere.pid) == []
    log = elsewhere.log()
    assert log.count("cannot take shared memory") == 1, log  # logged once, not per request
    assert "unable to open shared memory region" in log


def test_kubemind_serve_hands_the_pixels_over_through_shared_memory(images: dict[str, bytes], tmp_path: Path) -> None:
    """`kubemind serve --only image`: its transformer and the Triton predictor it starts on this
    machine use shared memory, answer right, and leave nothing behind when serve stops."""
    require_triton()
    serve = Serve(tmp_path, "--only", "image", "--port_base", "0")
    try:
        serve.wait_ready()
        text = serve.text()
        services = dict(re.findall(r"== (\w+): REST (http://127\.0\.0\.1:\d+) ", text))
        pids = dict(re.findall(r"== (\w+): REST \S+  gRPC \S+  \(pid (\d+)\)", text))
        answer = classify(services["image"], [images["coffee"]])
        assert answer["class_ids"][0][0] == 967  # espresso
        image_pid = int(pids["image"])
        assert regions_of(services["triton"], image_pid), text
    finally:
        assert serve.stop() == 0, serve.text()
    assert segments_of(image_pid) == []
