"""An index is a versioned artifact: `kubemind models register NAME INDEX --flavor rag-index`
puts it in a real MLflow registry like a model, the storage initializer downloads and verifies
`models:/NAME@ALIAS` as it does a model, and the RAG transformer retrieves from the download."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kubemind.cli import main
from kubemind_registry.initializer import main as initializer_main
from kubemind_transformers.rag.index import IndexManifest, build_embedder, open_store
from kubemind_transformers.rag.metrics import RagMetrics
from kubemind_transformers.rag.retrieval import Retriever
from kubemind_transformers.rag.settings import RagSettings
from tests.component import registry_fixtures
from tests.component.rag_fixtures import stored_ids, topic_corpus

# The shared real-server fixtures (see registry_fixtures.py).
mlflow_server = registry_fixtures.mlflow_server
registry_env = registry_fixtures.registry_env
pytestmark = pytest.mark.usefixtures("registry_env")


async def top_source(index_dir: Path, question: str) -> str:
    settings = RagSettings(index_dir=str(index_dir), milvus_timeout_seconds=30)
    store = open_store(settings, timeout=settings.milvus_timeout_seconds)
    store.load()
    retriever = Retriever(settings, build_embedder(settings), store, None, RagMetrics())
    try:
        return (await retriever.retrieve(question, top_k=5)).hits[0].source
    finally:
        store.close()
        await retriever.embedder.close()


def test_a_registered_index_is_downloaded_verified_and_serves_retrieval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs, index_dir = topic_corpus(tmp_path / "docs", ("assert", "break", "while", "yield")), tmp_path / "index"
    assert main(["rag", "index", "--corpus", str(docs), "--index_dir", str(index_dir)]) == 0
    code = main(["models", "register", "docs-index", str(index_dir), "--flavor", "rag-index", "--alias", "champion"])
    assert code == 0, capsys.readouterr().err

    dest = tmp_path / "mnt" / "models"
    assert initializer_main(["models:/docs-index@champion", str(dest)]) == 0, capsys.readouterr().err

    # what the transformer checks (the embedder) and what it searches (the chunks) came along
    assert IndexManifest.read(dest) == IndexManifest.read(index_dir)
    assert stored_ids(dest) == stored_ids(index_dir)
    assert asyncio.run(top_source(dest, "What does the break statement do inside a loop?")) == "break.md"


def test_a_folder_that_is_no_index_is_refused_naming_its_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "not-an-index"
    folder.mkdir()
    (folder / "notes.txt").write_text("no manifest here")

    code = main(["models", "register", "docs-index", str(folder), "--flavor", "rag-index"])

    err = capsys.readouterr().err
    assert code != 0
    assert "index.json" in err and "kubemind rag index" in err
    assert "Traceback" not in err
