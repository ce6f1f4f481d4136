"""The Milvus collection of chunks: the only module that imports pymilvus.

One collection per index: `id` (the chunk's content hash, primary key), `text` (analysed, the
input of Milvus's BM25 function, which fills `sparse`), `dense` (the embedding, HNSW, cosine),
and the scalar fields a request may filter on (`source`, `corpus`, `title`, `position`).
Locally the URI is a Milvus Lite file; on a cluster a Milvus standalone or distributed URI.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kubemind.errors import BackendUnavailable, InvalidInput
from kubemind_transformers.rag.corpus import Chunk

DENSE = "dense"
SPARSE = "sparse"
FILTER_FIELDS = {"source": str, "corpus": str, "title": str, "position": int}
"""Scalar fields a request's metadata filter may name, with their types."""
OUTPUT_FIELDS = ["id", "source", "corpus", "title", "position", "text"]
MAX_TEXT = 8192  # characters of chunk text (a VARCHAR's max_length counts bytes: UTF-8 room below)


class MilvusUnavailable(BackendUnavailable):
    """Milvus cannot be reached or refused the call; the message names Milvus and the URI."""


@dataclass(frozen=True)
class Hit:
    id: str
    source: str
    corpus: str
    title: str
    position: int
    text: str
    score: float

    def as_source(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "title": self.title, "score": round(self.score, 6)}


def filter_expression(metadata: dict[str, Any] | None) -> str:
    """A Milvus boolean expression from {field: value or [values]}; unknown fields and values of
    the wrong type are a 400 naming the field. Values are JSON-quoted, never pasted in."""
    if not metadata:
        return ""
    if not isinstance(metadata, dict):
        raise InvalidInput("filter: must be an object of field -> value", param="filter")
    clauses = []
    for name, value in sorted(metadata.items()):
        kind = FILTER_FIELDS.get(name)
        if kind is None:
            raise InvalidInput(
                f"filter.{name}: unknown filter field '{name}' (known: {', '.join(FILTER_FIELDS)})", param="filter"
            )
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
            raise InvalidInput(f"filter.{name}: must be a {kind.__name__} or a list of them", param="filter")
        literals = ", ".join(json.dumps(v) for v in values)
        clauses.append(f"{name} == {literals}" if len(values) == 1 else f"{name} in [{literals}]")
    return " and ".join(clauses)


class ChunkStore:
    """A Milvus collection of chunks: created with its indexes, upserted, searched."""

    def __init__(self, uri: str, collection: str, *, token: str = "", timeout: float = 5.0):
        from pymilvus import MilvusClient

        self.uri = uri
        self.collection = collection
        self.timeout = timeout
        try:
            self._client = MilvusClient(uri=uri, token=token, timeout=timeout)
        except Exception as exc:  # pymilvus raises MilvusException and plain connection errors
            raise MilvusUnavailable(f"Milvus at {uri} cannot be reached: {exc}") from None

    def _fail(self, what: str, exc: Exception) -> MilvusUnavailable:
        return MilvusUnavailable(f"Milvus ({self.uri}, collection {self.collection}) {what} failed: {exc}")

    # -- the collection ----------------------------------------------------------------------------
    def exists(self) -> bool:
        try:
            return bool(self._client.has_collection(self.collection))
        except Exception as exc:
            raise self._fail("has_collection", exc) from None

    def create(self, dimension: int) -> None:
        """Create the collection with its dense HNSW and BM25 sparse indexes (no-op when present)."""
        from pymilvus import DataType, Function, FunctionType

        if self.exists():
            self.load()
            return
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT * 2, enable_analyzer=True)
        schema.add_field("source", DataType.VARCHAR, max_length=512)
        schema.add_field("corpus", DataType.VARCHAR, max_length=256)
        schema.add_field("title", DataType.VARCHAR, max_length=1024)
        schema.add_field("position", DataType.INT64)
        schema.add_field(DENSE, DataType.FLOAT_VECTOR, dim=dimension)
        schema.add_field(SPARSE, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(name="text_bm25", function_type=FunctionType.BM25, input_field_names=["text"], output_field_names=[SPARSE])
        )
        index = self._client.prepare_index_params()
        index.add_index(field_name=DENSE, index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 200})
        index.add_index(field_name=SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        self._client.create_collection(self.collection, schema=schema, index_params=index)

    def load(self) -> None:
        """Load the collection for search (a reopened collection starts released)."""
        try:
            self._client.load_collection(self.collection, timeout=max(self.timeout, 30.0))
        except Exception as exc:
            raise self._fail("load_collection", exc) from None

    def drop(self) -> None:
        if self.exists():
            self._client.drop_collection(self.collection)

    def count(self) -> int:
        try:
            rows = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        except Exception as exc:
            raise self._fail("count", exc) from None
        return int(rows[0]["count(*)"]) if rows else 0

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        rows = self._client.get(self.collection, ids=list(ids), output_fields=["id"])
        return {str(row["id"]) for row in rows}

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        rows = [
            {"id": c.id, "text": c.text[:MAX_TEXT], "source": c.source, "corpus": c.corpus, "title": c.title[:1000],
             "position": c.position, DENSE: vector.tolist()}
            for c, vector in zip(chunks, vectors, strict=True)
        ]  # fmt: skip
        if rows:
            self._client.upsert(self.collection, rows)

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._client.delete(self.collection, ids=list(ids))

    def ids(self) -> set[str]:
        return {str(row["id"]) for row in self.all_chunks(fields=["id"])}

    def all_chunks(self, batch: int = 1000, fields: Sequence[str] = (*OUTPUT_FIELDS, DENSE)) -> list[dict[str, Any]]:
        """Every row (with its dense vector by default: the exact-search baseline and tests)."""
        self.load()  # a query iterator needs the collection loaded, and a reopened one is released
        iterator = self._client.query_iterator(self.collection, batch_size=batch, filter="", output_fields=list(fields))
        rows: list[dict[str, Any]] = []
        try:
            while page := iterator.next():
                rows.extend(page)
        finally:
            iterator.close()
        return rows

    # -- search ------------------------------------------------------------------------------------
    def search(self, vector: np.ndarray, question: str, limit: int, *, hybrid: bool = True, expression: str = "",
               rrf_k: int = 60, ef: int = 64) -> list[Hit]:  # fmt: skip
        """Dense HNSW search, fused by reciprocal rank with BM25 over the text when `hybrid`."""
        from pymilvus import AnnSearchRequest, RRFRanker

        dense = vector.astype(np.float32).tolist()
        try:
            if hybrid:
                requests = [
                    AnnSearchRequest(data=[dense], anns_field=DENSE, param={"metric_type": "COSINE", "params": {"ef": max(ef, limit)}},
                                     limit=limit, expr=expression or None),
                    AnnSearchRequest(data=[question], anns_field=SPARSE, param={"metric_type": "BM25"}, limit=limit,
                                     expr=expression or None),
                ]  # fmt: skip
                result = self._client.hybrid_search(
                    self.collection, requests, RRFRanker(rrf_k), limit=limit, output_fields=OUTPUT_FIELDS, timeout=self.timeout
                )
            else:
                result = self._client.search(
                    self.collection, data=[dense], anns_field=DENSE, limit=limit, filter=expression,
                    search_params={"metric_type": "COSINE", "params": {"ef": max(ef, limit)}}, output_fields=OUTPUT_FIELDS,
                    timeout=self.timeout,
                )  # fmt: skip
        except Exception as exc:
            raise self._fail("search", exc) from None
        return [_hit(item) for item in result[0]]

    def close(self) -> None:
        # Closing a client whose server is gone must not mask why we stop.
        with contextlib.suppress(Exception):
            self._client.close()
        if self.uri.endswith(".db"):
            # Milvus Lite runs in this process; stopping it flushes the file, so the folder can
            # be copied or opened by another process at once.
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.uri)


def _hit(item: Any) -> Hit:
    entity = item.get("entity", item)
    return Hit(
        id=str(item.get("id", entity.get("id"))),
        source=str(entity.get("source", "")),
        corpus=str(entity.get("corpus", "")),
        title=str(entity.get("title", "")),
        position=int(entity.get("position", 0)),
        text=str(entity.get("text", "")),
        score=float(item.get("distance", 0.0)),
    )


def hits_from_rows(rows: Iterable[dict[str, Any]], scores: Iterable[float]) -> list[Hit]:
    return [_hit({**row, "distance": score}) for row, score in zip(rows, scores, strict=True)]


__all__ = ["FILTER_FIELDS", "ChunkStore", "Hit", "MilvusUnavailable", "filter_expression"]
