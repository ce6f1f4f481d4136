"""Settings of the RAG index (`kubemind rag index`) and of the RAG transformer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubemind.settings import ComponentSettings


def default_index_dir() -> str:
    """$KUBEMIND_HOME/rag/python-reference (default ~/.kubemind/...): the demo index."""
    return str(Path(os.environ.get("KUBEMIND_HOME") or Path.home() / ".kubemind") / "rag" / "python-reference")


class IndexLocation(BaseSettings):
    """Where an index lives and which embedder makes its vectors: shared by the indexer and the
    transformer, so both read the same flags."""

    model_config = SettingsConfigDict(env_prefix="KUBEMIND_RAG_", extra="forbid", use_attribute_docstrings=True,
                                      validate_default=True)  # fmt: skip

    index_dir: str = Field(default_factory=default_index_dir)
    """The index artifact's folder: index.json (the manifest) and, for Milvus Lite, milvus.db.
    On a cluster: the storage initializer's /mnt/models (a `models:/docs-index@champion` pin)."""

    milvus_uri: str = ""
    """Milvus URI (http://milvus:19530 on a cluster, from a Secret); empty: Milvus Lite at
    index_dir/milvus.db."""

    milvus_token: str = ""
    """Milvus token (`user:password`), from a Secret on a cluster."""

    collection: str = "docs"
    """The Milvus collection holding the chunks."""

    embedder: Literal["onnx", "triton"] = "onnx"
    """onnx: all-MiniLM-L6-v2 with ONNX Runtime in this process; triton: the Triton predictor's
    minilm model over v2 gRPC at embedder_address."""

    embedder_address: str = "127.0.0.1:8081"
    """host:port of the Triton predictor serving minilm (embedder triton)."""

    embedder_version: str = ""
    """The embedder's version when its ONNX graph is not on this machine (triton on a cluster);
    empty: the digest of onnx_dir/minilm.onnx."""

    onnx_dir: str = ""
    """Folder with minilm.onnx and minilm_tokenizer.json; empty: the one `make install` fills."""

    embed_threads: int = Field(default=1, gt=0)
    """ONNX Runtime intra-op threads of the in-process embedder."""

    def resolved_milvus_uri(self) -> str:
        return self.milvus_uri or str(Path(self.index_dir) / "milvus.db")


class IndexSettings(IndexLocation):
    """`kubemind rag index`: chunk a corpus, embed the chunks, upsert them into Milvus."""

    corpus: str = "python-reference"
    """python-reference (pydoc_data.topics) or a folder of .txt/.md/.rst files."""

    chunk_size: int = Field(default=800, gt=0)
    """Target chunk length in characters."""

    chunk_overlap: int = Field(default=120, ge=0)
    """Characters a chunk repeats from the end of the previous one."""

    batch_size: int = Field(default=32, gt=0)
    """Chunks embedded and upserted per batch (the unit of resumption)."""


class RagSettings(IndexLocation, ComponentSettings):
    """The RAG transformer: OpenAI chat and v2 text_input in, a grounded answer with sources out."""

    model_config = SettingsConfigDict(env_prefix="KUBEMIND_RAG_", extra="forbid", use_attribute_docstrings=True,
                                      validate_default=True)  # fmt: skip

    model_name: str = "rag"
    """Name of the model on the endpoint path and in OpenAI's `model`."""

    index_corpus: str = ""
    """Index this corpus at start when the collection is missing or empty (`kubemind serve`'s
    demo); empty: the index must exist."""

    llm_url: str = "http://127.0.0.1:8080"
    """Base URL of the LLM predictor (its OpenAI chat endpoint is {llm_url}/openai/v1/chat/completions)."""

    llm_model: str = "smollm2"
    """The model name at the LLM predictor."""

    llm_timeout_seconds: float = Field(default=60.0, gt=0)
    """Deadline of the LLM call (the whole answer; a stream's gaps between tokens too)."""

    max_tokens: int = Field(default=256, gt=0)
    """Answer tokens when the request sets none."""

    top_k: int = Field(default=4, gt=0, le=50)
    """Chunks put in the prompt."""

    candidates: int = Field(default=20, gt=0, le=200)
    """Chunks fetched from Milvus before re-ranking."""

    hybrid: bool = True
    """Dense + BM25 fused by RRF; false: dense (HNSW) only."""

    rrf_k: int = Field(default=60, gt=0)
    """RRF's k: a lower k weights the top ranks more."""

    milvus_timeout_seconds: float = Field(default=2.0, gt=0)
    """Deadline of one Milvus search."""

    feature_repo: str = ""
    """Feast repository folder (features/: the definitions and sources); empty: no features
    (defaults for every user)."""

    feature_store_yaml: str = ""
    """The Feast config: its registry and online store. Empty: the repository's own
    feature_store.yaml (SQLite in features/data); on a cluster features/cluster/feature_store.yaml
    (Postgres registry, Redis), whose ${VAR}s come from the environment (Secrets)."""

    feature_online_store: str = ""
    """Instead of the config's online store: sqlite:///PATH or redis://host:port[/db]; empty: the
    config's."""

    feature_timeout_seconds: float = Field(default=1.0, gt=0)
    """Deadline of one Feast lookup; past it the answer goes on without features."""

    features_required: bool = False
    """Feast down: answer 503 instead of answering without features."""

    quality_weight: float = Field(default=0.2, ge=0)
    """Re-ranking: how much a document's quality score (0..1) adds to its fused rank score. At 0.2
    it reorders hits whose fused scores are about one rank apart; measured on the labelled
    Python-reference set (recall@1 / @5): 0.83 / 0.97 without it, 0.83 / 1.00 at 0.05-0.3, and
    0.73 / 1.00 at 0.5, where length-favoured topics start to win over the right one."""

    max_question_tokens: int = Field(default=256, gt=0)
    """Token budget of a question (the embedder's word pieces); over it: 400."""

    prompt_template: str = ""
    """A str.format template with {context}, {question}, {expertise} and {length}; empty: the
    built-in one."""

    user_header: str = "x-user-id"
    """Request header naming the user (OpenAI's `user` field wins)."""
