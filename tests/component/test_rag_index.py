"""`kubemind rag index`: a real corpus folder, the real embedder (ONNX Runtime in-process) and
Milvus Lite. Re-indexing is idempotent, an unreadable document is named and the next run
resumes after it, and the manifest records what the index was built with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubemind.cli import main
from tests.component.rag_fixtures import stored_ids, topic_corpus

TOPICS = ("assert", "break", "continue", "pass")


def corpus(folder: Path) -> Path:
    return topic_corpus(folder, TOPICS)


def index(capsys: pytest.CaptureFixture[str], folder: Path, index_dir: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["rag", "index", "--corpus", str(folder), "--index_dir", str(index_dir), "--chunk_size", "400",
                 "--chunk_overlap", "50", *extra])  # fmt: skip
    out, err = capsys.readouterr()
    return code, out, err


def test_reindexing_the_same_corpus_embeds_nothing_and_keeps_the_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, index_dir = corpus(tmp_path / "docs"), tmp_path / "index"
    code, out, err = index(capsys, folder, index_dir)
    assert code == 0, err
    manifest = json.loads((index_dir / "index.json").read_text())
    chunks = manifest["chunks"]
    assert f"{len(TOPICS)} documents, {chunks} chunks ({chunks} embedded, 0 already stored" in out
    assert manifest["embedder"]["name"] == "minilm" and manifest["embedder"]["dimension"] == 384
    assert manifest["chunking"] == {"size": 400, "overlap": 50}
    first_ids = stored_ids(index_dir)
    assert len(first_ids) == chunks > len(TOPICS)

    code, out, err = index(capsys, folder, index_dir)
    assert code == 0, err
    assert f"(0 embedded, {chunks} already stored, 0 removed)" in out
    again = json.loads((index_dir / "index.json").read_text())
    assert again["corpus"]["digest"] == manifest["corpus"]["digest"]
    assert stored_ids(index_dir) == first_ids

    # An edited document: its old chunks go, its new ones come, the others stay.
    (folder / "pass.md").write_text("The pass statement\n******************\n\npass is a null operation.")
    code, out, err = index(capsys, folder, index_dir)
    assert code == 0, err
    edited = json.loads((index_dir / "index.json").read_text())
    assert edited["corpus"]["digest"] != manifest["corpus"]["digest"]
    assert "(1 embedded," in out and "0 removed" not in out


def test_an_unreadable_document_is_named_and_the_next_run_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, index_dir = corpus(tmp_path / "docs"), tmp_path / "index"
    (folder / "broken.md").write_bytes(b"caf\xe9 is not UTF-8 \xff\xfe")  # between break.md and continue.md
    code, _, err = index(capsys, folder, index_dir, "--batch_size", "2")
    assert code == 2
    assert "cannot read document broken.md" in err and str(folder / "broken.md") in err
    assert not (index_dir / "index.json").exists()  # not a finished index
    stored = len(stored_ids(index_dir))
    assert stored > 0  # assert.md and break.md were upserted before the failure

    (folder / "broken.md").write_text("Broken, now fixed\n\nA readable document.")
    code, out, err = index(capsys, folder, index_dir, "--batch_size", "2")
    assert code == 0, err
    manifest = json.loads((index_dir / "index.json").read_text())
    assert "already stored" in out
    skipped = int(out.split(" embedded, ")[1].split(" already")[0])
    assert skipped == stored  # nothing stored by the first run was embedded again
    assert manifest["corpus"]["documents"] == len(TOPICS) + 1


def test_an_index_built_with_other_chunking_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, index_dir = corpus(tmp_path / "docs"), tmp_path / "index"
    assert index(capsys, folder, index_dir)[0] == 0
    code, _, err = index(capsys, folder, index_dir, "--chunk_size", "600")
    assert code == 2 and "chunked with {'size': 400, 'overlap': 50}" in err
