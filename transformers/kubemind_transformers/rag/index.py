"""Building an index and reading its manifest.

An index is a versioned artifact: a folder holding `index.json` (the embedder's name, version and
dimension, the chunking settings, the corpus digest) and, with Milvus Lite, the Milvus file. It
can be registered and pinned like a model; the RAG transformer refuses to start when its embedder
is not the one the index was built with.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubemind import __version__
from kubemind.errors import InvalidSettings
from kubemind.progress import CountProgress
from kubemind_registry.signatures import INDEX_MANIFEST
from kubemind_transformers.rag.corpus import (
    Chunk,
    ChunkingSettings,
    CorpusDigest,
    chunks,
    open_corpus,
)
from kubemind_transformers.rag.embedder import (
    Embedder,
    EmbedderIdentity,
    OnnxEmbedder,
    TritonEmbedder,
    default_onnx_dir,
    graph_version,
)
from kubemind_transformers.rag.settings import IndexLocation, IndexSettings
from kubemind_transformers.rag.store import ChunkStore

FORMAT = 1


class EmbedderMismatch(InvalidSettings):
    """The embedder is not the one the index was built with; the message names both."""


@dataclass(frozen=True)
class IndexManifest:
    collection: str
    embedder: EmbedderIdentity
    chunking: ChunkingSettings
    corpus: str
    corpus_digest: str
    documents: int
    chunks: int
    created: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "collection": self.collection,
            "embedder": self.embedder.as_dict(),
            "chunking": self.chunking.as_dict(),
            "corpus": {"name": self.corpus, "digest": self.corpus_digest, "documents": self.documents},
            "chunks": self.chunks,
            "created": self.created,
            "kubemind_version": __version__,
        }

    @classmethod
    def read(cls, index_dir: Path) -> IndexManifest | None:
        path = index_dir / INDEX_MANIFEST
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(
                collection=str(data["collection"]),
                embedder=EmbedderIdentity(**data["embedder"]),
                chunking=ChunkingSettings(**data["chunking"]),
                corpus=str(data["corpus"]["name"]),
                corpus_digest=str(data["corpus"]["digest"]),
                documents=int(data["corpus"]["documents"]),
                chunks=int(data["chunks"]),
                created=str(data.get("created", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSettings(f"--index_dir: {path} is not an index manifest: {exc}") from None

    def write(self, index_dir: Path) -> Path:
        index_dir.mkdir(parents=True, exist_ok=True)
        path = index_dir / INDEX_MANIFEST
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        partial.replace(path)
        return path


def check_embedder(manifest: IndexManifest, embedder: EmbedderIdentity) -> None:
    if manifest.embedder != embedder:
        raise EmbedderMismatch(
            f"the index in collection '{manifest.collection}' was built with embedder {manifest.embedder}, "
            f"but this embedder is {embedder}: re-index with `kubemind rag index` or configure the index's embedder"
        )


def build_embedder(settings: IndexLocation) -> Embedder:
    """The embedder the settings name. Call from a running event loop (the Triton one opens a
    gRPC channel on it)."""
    onnx_dir = Path(settings.onnx_dir) if settings.onnx_dir else default_onnx_dir()
    if settings.embedder == "triton":
        version = settings.embedder_version or graph_version(onnx_dir)
        return TritonEmbedder(settings.embedder_address, version)
    return OnnxEmbedder(onnx_dir, settings.embed_threads)


def open_store(settings: IndexLocation, timeout: float = 30.0) -> ChunkStore:
    Path(settings.index_dir).mkdir(parents=True, exist_ok=True)
    return ChunkStore(settings.resolved_milvus_uri(), settings.collection, token=settings.milvus_token, timeout=timeout)


@dataclass
class IndexReport:
    manifest: IndexManifest
    embedded: int
    """Chunks embedded and upserted by this run."""
    skipped: int
    """Chunks already in the collection (an earlier or interrupted run stored them)."""
    removed: int
    """Chunks of text no longer in the corpus, deleted."""


async def build_index(settings: IndexSettings, embedder: Embedder, store: ChunkStore) -> IndexReport:
    """Chunk, embed and upsert the corpus, batch by batch; chunks already stored are skipped, so
    a run after an interruption does only the rest. The manifest is written last."""
    chunking = ChunkingSettings(settings.chunk_size, settings.chunk_overlap)
    index_dir = Path(settings.index_dir)
    previous = IndexManifest.read(index_dir)
    if previous is not None:
        check_embedder(previous, embedder.identity)
        if previous.chunking != chunking:
            raise InvalidSettings(
                f"--chunk_size/--chunk_overlap: the index in {index_dir} was chunked with {previous.chunking.as_dict()}, "
                f"not {chunking.as_dict()}; give another --index_dir or --collection"
            )
    corpus = open_corpus(settings.corpus)
    store.create(embedder.identity.dimension)
    digest = CorpusDigest()
    seen: set[str] = set()
    pending: list[Chunk] = []
    embedded = skipped = 0

    async def flush(batch: Sequence[Chunk]) -> None:
        nonlocal embedded, skipped
        stored = store.existing_ids([c.id for c in batch])
        new = [c for c in batch if c.id not in stored]
        skipped += len(batch) - len(new)
        if new:
            vectors = await embedder.embed([c.text for c in new])
            store.upsert(new, vectors)
            embedded += len(new)

    with CountProgress(corpus.size, f"indexing {corpus.name}") as progress:
        for document in corpus:
            digest.add(document)
            for chunk in chunks(document, chunking):
                if chunk.id not in seen:  # the same text twice in a corpus is one chunk
                    seen.add(chunk.id)
                    pending.append(chunk)
            while len(pending) >= settings.batch_size:
                await flush(pending[: settings.batch_size])
                del pending[: settings.batch_size]
            progress.add(1)
        await flush(pending)
    # Chunks of text the corpus no longer holds (an edited or removed document) go: the index
    # holds exactly what its digest says.
    stale = store.ids() - seen
    store.delete(sorted(stale))
    manifest = IndexManifest(
        collection=settings.collection,
        embedder=embedder.identity,
        chunking=chunking,
        corpus=corpus.name,
        corpus_digest=digest.hexdigest(),
        documents=digest.documents,
        chunks=len(seen),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    manifest.write(index_dir)
    return IndexReport(manifest, embedded, skipped, len(stale))


__all__ = ["EmbedderMismatch", "IndexManifest", "IndexReport", "build_embedder", "build_index", "check_embedder", "open_store"]
