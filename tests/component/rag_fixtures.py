"""RAG test fixtures: the demo index (built once per embedder, chunking and corpus, then copied),
a Milvus Lite server as its own process, and the labelled question set.

Embedding the 79 Python reference topics (~800 chunks) takes minutes on two shared cores, so the
built index is cached under the kubemind cache (keyed by everything that makes its content) and
each test session works on a copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Iterable
from pathlib import Path
from pydoc_data.topics import topics

from kubemind_predictors.vllm.convert import cache_root
from kubemind_transformers.rag import corpus
from kubemind_transformers.rag.embedder import default_onnx_dir, graph_version
from kubemind_transformers.rag.features import FeatureRepo, repository_root
from kubemind_transformers.rag.index import build_embedder, build_index, open_store
from kubemind_transformers.rag.settings import IndexSettings
from kubemind_transformers.rag.store import ChunkStore

# (question, the Python reference topic that answers it)
LABELLED_QUESTIONS: list[tuple[str, str]] = [
    ("What does the assert statement do when the expression is false?", "assert"),
    ("How does augmented assignment like x += 1 work?", "augassign"),
    ("What does the break statement do inside a loop?", "break"),
    ("How do I define a class and what is its body executed as?", "class"),
    ("How are comparison operators like < and == chained?", "comparisons"),
    ("What does the continue statement do?", "continue"),
    ("What methods does a context manager need for the with statement?", "context-managers"),
    ("What does the del statement do to a name?", "del"),
    ("How do I write a dictionary display with key: value pairs?", "dict"),
    ("How is an else clause of a for loop or try statement executed?", "else"),
    ("What happens when an exception is raised and not handled?", "exceptions"),
    ("How does the for statement iterate over an iterable?", "for"),
    ("What are format string fields and conversions like !r in str.format?", "formatstrings"),
    ("How do I define a function with default parameter values?", "function"),
    ("What does the global statement declare?", "global"),
    ("How does the if elif else statement choose a branch?", "if"),
    ("How does the import statement find and load a module?", "import"),
    ("What is a lambda expression?", "lambda"),
    ("What does the nonlocal statement do in nested functions?", "nonlocal"),
    ("What does the pass statement do?", "pass"),
    ("What does the power operator ** do with negative numbers?", "power"),
    ("How does the raise statement re-raise or chain exceptions with from?", "raise"),
    ("What does return do inside a generator or function?", "return"),
    ("How do slicings like a[1:2] work?", "slicings"),
    ("Which values are considered false in truth value testing?", "truth"),
    ("How does try with except and finally work?", "try"),
    ("How does the while loop repeat?", "while"),
    ("What does the with statement do with the context manager's __enter__ and __exit__?", "with"),
    ("What does a yield expression do in a generator?", "yield"),
    ("What are the string methods like str.split and str.join?", "string-methods"),
]


def demo_index_key() -> str:
    """Everything that decides the demo index's content: the embedder, the chunking code and
    settings, and the corpus (this Python's pydoc_data)."""
    settings = IndexSettings()
    digest = hashlib.sha256()
    digest.update(graph_version(default_onnx_dir()).encode())
    digest.update(Path(corpus.__file__).read_bytes())
    digest.update(f"{settings.chunk_size}/{settings.chunk_overlap}/{settings.collection}".encode())
    for document in corpus.python_reference():
        digest.update(document.source.encode() + hashlib.sha256(document.text.encode()).digest())
    return digest.hexdigest()[:16]


def cached_demo_index() -> Path:
    """The demo index folder in the cache, built when missing (minutes, once)."""
    target = cache_root() / "rag" / f"python-reference-{demo_index_key()}"
    if (target / "index.json").is_file():  # written last: the index is complete
        return target
    settings = IndexSettings(index_dir=str(target), embed_threads=2)

    async def build() -> None:
        embedder = build_embedder(settings)
        store = open_store(settings)
        try:
            await build_index(settings, embedder, store)  # resumes an interrupted build
        finally:
            store.close()
            await embedder.close()

    asyncio.run(build())
    return target


def topic_corpus(folder: Path, keys: Iterable[str]) -> Path:
    """A corpus folder of a few Python reference topics (one .md file each): seconds to index."""
    folder.mkdir()
    for key in keys:
        (folder / f"{key}.md").write_text(topics[key])
    return folder


def stored_ids(index_dir: Path) -> set[str]:
    """The chunk ids in an index folder's Milvus Lite collection."""
    settings = IndexSettings(index_dir=str(index_dir))
    store = ChunkStore(settings.resolved_milvus_uri(), settings.collection)
    try:
        return store.ids()
    finally:
        store.close()


def copy_demo_index(destination: Path) -> Path:
    shutil.copytree(cached_demo_index(), destination)
    return destination


def applied_feature_repo(destination: Path) -> FeatureRepo:
    """A copy of features/ at `destination`, applied and materialized into its SQLite online store."""
    shutil.copytree(repository_root(), destination, ignore=shutil.ignore_patterns("data"))
    repo = FeatureRepo(destination)
    repo.apply()
    repo.materialize()
    return repo


if __name__ == "__main__":
    print(cached_demo_index())
