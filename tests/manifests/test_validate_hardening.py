"""Issue 18, `kubemind validate`: hostile and malformed input is a clear problem, never a
traceback, a hang or a megabyte of output."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubemind.cli import main

ISVC = """apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: demo
spec:
  predictor:
    sklearn:
      storageUri: gs://b/m
"""

# 9 levels of 9 aliases: 9^9 (387 million) leaves once expanded, in 422 bytes.
ALIAS_BOMB = "\n".join(
    [
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata: {name: lol}",
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *[
            f"{chr(ord('a') + i)}: &{chr(ord('a') + i)} [{','.join(['*' + chr(ord('a') + i - 1)] * 9)}]"
            for i in range(1, 9)
        ],
        "data: {x: *i}",
    ]
)


def validate(capsys: pytest.CaptureFixture[str], crd_dir: Path, *paths: Path, extra: tuple[str, ...] = ()) -> tuple[int, str]:
    code = main(["validate", "--crds", str(crd_dir), *extra, *map(str, paths)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out


def write(tmp_path: Path, text: str | bytes, name: str = "m.yaml") -> Path:
    file = tmp_path / name
    file.write_bytes(text.encode() if isinstance(text, str) else text)
    return file


def test_an_alias_bomb_is_refused_quickly_with_a_short_message(crd_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert len(ALIAS_BOMB) < 600
    code, out = validate(capsys, crd_dir, write(tmp_path, ALIAS_BOMB))
    assert code == 1
    assert "not valid YAML: document expands to more than 1000000 nodes once its aliases are resolved" in out
    assert len(out) < 1000


def test_a_value_quoted_in_a_message_is_clipped(crd_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = validate(capsys, crd_dir, write(tmp_path, ISVC.replace("name: demo", f"name: {'x' * 100_000}")))
    assert code == 1
    assert max(len(line) for line in out.splitlines()) < 1200


def test_a_file_that_is_not_utf8(crd_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write(tmp_path, ISVC.encode().replace(b"demo", b"d\xffmo"))
    code, out = validate(capsys, crd_dir, file)
    assert code == 1
    assert f"{file}: -: -: not UTF-8 text: byte 0xff at offset" in out


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (ISVC.replace("kind: InferenceService", "kind: 5"), "5/demo: kind: must be a string, got int 5"),
        (ISVC.replace("metadata:\n  name: demo", "metadata: hello"), "InferenceService/?: metadata: must be a mapping, got str 'hello'"),
        (ISVC.split("spec:")[0] + "spec: null\n", "InferenceService/demo: spec: must be a mapping, got null"),
    ],
    ids=["kind-5", "metadata-hello", "spec-null"],
)
def test_a_malformed_envelope_is_a_problem_at_its_field(
    crd_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: str
) -> None:
    file = write(tmp_path, text)
    code, out = validate(capsys, crd_dir, file)
    assert code == 1
    assert f"{file}: {line}" in out


def test_a_top_level_list_is_not_ok(crd_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write(tmp_path, "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: x}\n")
    code, out = validate(capsys, crd_dir, file)
    assert code == 1
    assert f"{file}: -: -: document 1 is a list, not a Kubernetes object" in out


@pytest.mark.parametrize("depth", [500, 5000])
def test_deep_nesting_is_refused(crd_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], depth: int) -> None:
    text = ISVC + "  x: " + "[" * depth + "]" * depth + "\n"
    code, out = validate(capsys, crd_dir, write(tmp_path, text))
    assert code == 1
    # libyaml stops at 1000 levels itself; kubemind's bound (100) catches what it lets through.
    assert "not valid YAML: " in out
    assert ("nested more than 100 levels deep" if depth < 1000 else "maximum nesting depth") in out


def test_a_folder_with_a_broken_kustomization(crd_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "overlay"
    folder.mkdir()
    write(folder, "resources: [isvc.yaml\n  - : :", "kustomization.yaml")
    write(folder, ISVC, "isvc.yaml")
    code, out = validate(capsys, crd_dir, tmp_path)
    assert code == 1
    assert f"{folder}: -: -: " in out and "kustomize" in out


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_remote_resource_that_never_answers_times_out(
    crd_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], silent_server: int
) -> None:
    write(tmp_path, f"resources:\n- http://127.0.0.1:{silent_server}/isvc.yaml\n", "kustomization.yaml")
    code, out = validate(capsys, crd_dir, tmp_path, extra=("--kustomize-timeout", "3"))
    assert code == 1
    assert "did not finish within 3 s (a remote resource that never answers?)" in out
