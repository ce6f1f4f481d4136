"""Corpora and chunking: documents in, content-addressed chunks out.

A chunk's id is a hash of its source and text, so indexing the same text again upserts the same
rows (idempotent) and an interrupted run skips what it already stored (resumable). The corpus
digest is a hash over every document's source and text, so an index records exactly what it holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kubemind.errors import InvalidInput

PYTHON_REFERENCE = "python-reference"
"""The demo corpus: the Python Language Reference topics every Python ships (pydoc_data.topics)."""

TEXT_SUFFIXES = (".txt", ".md", ".rst")


class CorpusError(InvalidInput):
    """A document of the corpus cannot be read; the message names it."""


@dataclass(frozen=True)
class Document:
    source: str
    """What the answer cites: a topic key, or a file's path relative to the corpus folder."""
    text: str
    corpus: str
    title: str = ""


@dataclass(frozen=True)
class Chunk:
    id: str
    source: str
    text: str
    corpus: str
    title: str
    position: int
    """The chunk's place in its document (0 = first)."""


@dataclass(frozen=True)
class ChunkingSettings:
    size: int = 800
    """Target chunk length in characters."""
    overlap: int = 120
    """Characters a chunk repeats from the end of the previous one."""

    def __post_init__(self) -> None:
        if self.size <= 0 or not 0 <= self.overlap < self.size:
            raise InvalidInput(f"chunking: need 0 <= overlap ({self.overlap}) < size ({self.size})", param="chunk_size")

    def as_dict(self) -> dict[str, int]:
        return {"size": self.size, "overlap": self.overlap}


def _title(text: str, fallback: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first[:200] or fallback


@dataclass(frozen=True)
class Corpus:
    """A corpus whose size is known up front (for the progress bar) and whose documents are read
    one at a time, in a fixed order."""

    name: str
    size: int
    _read: Callable[[], Iterator[Document]]

    def __iter__(self) -> Iterator[Document]:
        return self._read()


def python_reference() -> Corpus:
    from pydoc_data.topics import topics  # stdlib: the same 79 topics `help()` shows

    def read() -> Iterator[Document]:
        for key in sorted(topics):
            text = topics[key]
            yield Document(key, text, PYTHON_REFERENCE, _title(text, key))

    return Corpus(PYTHON_REFERENCE, len(topics), read)


def folder(root: Path) -> Corpus:
    """Every .txt/.md/.rst file under `root`, in path order; an unreadable one stops the run with
    its path (the documents before it are already indexed, so the next run resumes after them)."""
    if not root.is_dir():
        raise CorpusError(f"corpus: {root} is not a folder (or give --corpus {PYTHON_REFERENCE})", param="corpus")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES and p.is_file())

    def read() -> Iterator[Document]:
        for path in paths:
            relative = path.relative_to(root).as_posix()
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CorpusError(f"corpus: cannot read document {relative} ({path}): {exc}", param="corpus") from None
            yield Document(relative, text, root.name, _title(text, relative))

    return Corpus(root.name, len(paths), read)


def open_corpus(corpus: str) -> Corpus:
    """`python-reference` or a folder of text/markdown files."""
    return python_reference() if corpus == PYTHON_REFERENCE else folder(Path(corpus).expanduser())


def _split_points(text: str, size: int, overlap: int) -> Iterator[tuple[int, int]]:
    """(start, end) windows of about `size` characters, ending at a paragraph, line or word
    boundary where one lies in the window's last third."""
    start, length = 0, len(text)
    while start < length:
        end = min(start + size, length)
        if end < length:
            window = text[start:end]
            floor = len(window) * 2 // 3
            for boundary in ("\n\n", "\n", " "):
                cut = window.rfind(boundary, floor)
                if cut > 0:
                    end = start + cut + len(boundary)
                    break
        yield start, end
        if end >= length:
            return
        following = max(end - overlap, start + 1)
        space = text.find(" ", following, end)  # start the overlap on a word
        start = space + 1 if 0 <= space < end - 1 else following


def chunk_id(source: str, text: str) -> str:
    return hashlib.sha256(f"{source}\x00{text}".encode()).hexdigest()[:32]


def chunks(document: Document, settings: ChunkingSettings) -> list[Chunk]:
    """The document's chunks; every chunk after the first starts with the document's title, so
    a chunk found on its own still says what it is about (for BM25 and the embedding alike)."""
    body = document.text.strip()
    out: list[Chunk] = []
    for position, (start, end) in enumerate(_split_points(body, settings.size, settings.overlap)):
        piece = body[start:end].strip()
        if not piece:
            continue
        text = piece if position == 0 or not document.title else f"{document.title}\n{piece}"
        out.append(Chunk(chunk_id(document.source, text), document.source, text, document.corpus, document.title, position))
    return out


@dataclass
class CorpusDigest:
    """sha256 over (source, text) of every document, in the order read."""

    _hash: hashlib._Hash = field(default_factory=hashlib.sha256)
    documents: int = 0

    def add(self, document: Document) -> None:
        self._hash.update(document.source.encode() + b"\x00" + hashlib.sha256(document.text.encode()).digest())
        self.documents += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


__all__ = ["PYTHON_REFERENCE", "Chunk", "ChunkingSettings", "Corpus", "CorpusDigest", "CorpusError", "Document", "chunk_id", "chunks", "open_corpus"]
