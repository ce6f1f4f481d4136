"""RAG pieces without servers: chunking, metadata filters, re-ranking, the serve entry."""

from __future__ import annotations

import pytest

from kubemind.errors import InvalidInput
from kubemind.local.services import local_services
from kubemind_transformers.rag.corpus import ChunkingSettings, Document, chunks
from kubemind_transformers.rag.retrieval import rerank
from kubemind_transformers.rag.store import Hit, filter_expression

TEXT = "The title line\n\n" + " ".join(f"word{i}" for i in range(400))


def test_chunks_are_content_addressed_overlapping_and_titled() -> None:
    document = Document("doc.md", TEXT, "docs", "The title line")
    first = chunks(document, ChunkingSettings(300, 60))
    assert [c.id for c in first] == [c.id for c in chunks(document, ChunkingSettings(300, 60))]
    assert len(first) > 5 and all(len(c.text) <= 300 + len("The title line\n") for c in first)
    assert all(c.text.startswith("The title line") for c in first)
    tail = first[0].text.split()[-1]
    assert tail in first[1].text  # the overlap repeats the end of the previous chunk
    edited = chunks(Document("doc.md", TEXT.replace("word399", "changed"), "docs", "The title line"), ChunkingSettings(300, 60))
    assert [c.id for c in edited][:-1] == [c.id for c in first][:-1] and edited[-1].id != first[-1].id


def test_filters_are_quoted_and_unknown_fields_named() -> None:
    assert filter_expression({"source": 'a"b'}) == 'source == "a\\"b"'
    assert filter_expression({"source": ["x", "y"], "position": 0}) == 'position == 0 and source in ["x", "y"]'
    with pytest.raises(InvalidInput, match="unknown filter field 'author'") as error:
        filter_expression({"author": "guido"})
    assert error.value.param == "filter"
    with pytest.raises(InvalidInput, match=r"filter\.position: must be a int"):
        filter_expression({"position": "first"})


def test_rerank_lets_quality_break_near_ties_only() -> None:
    hits = [Hit(str(i), source, "c", "t", 0, "", score) for i, (source, score) in enumerate([("a", 0.0330), ("b", 0.0328), ("c", 0.016)])]
    ranked = rerank(hits, {"a": 0.5, "b": 1.0, "c": 1.0}, weight=0.5)
    assert [h.source for h in ranked] == ["b", "a", "c"]
    assert [h.source for h in rerank(hits, {}, weight=0.5)] == ["a", "b", "c"]


def test_serve_runs_rag_against_the_llm_service() -> None:
    services = {service.name: service for service in local_services()}
    rag = services["rag"]
    assert rag.forwards_to == "llm-chat" and rag.forward_flag == ("--llm_url", "http")
    assert "--index_corpus" in rag.args
    assert "model='rag'" in rag.sample_call("http://127.0.0.1:1", "127.0.0.1:2")
