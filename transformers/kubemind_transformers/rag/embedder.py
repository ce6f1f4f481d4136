"""The question and chunk embedder: all-MiniLM-L6-v2 (`minilm`), in-process or behind Triton.

`OnnxEmbedder` runs the ONNX graph `make install` exports (mean pooling and L2 normalisation are
inside the graph) with ONNX Runtime in this process, for machines without Triton; `TritonEmbedder`
calls the Triton predictor's `minilm` model over v2 gRPC. Both give the same vectors, and both
report the same identity (name, version = the ONNX graph's digest, dimension), which an index
records and the RAG transformer checks at start.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kubemind.errors import InvalidSettings
from kubemind.oip_client import OIPClient, RetryPolicy, Tensor

MINILM = "minilm"
MINILM_DIMENSION = 384
MINILM_MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length
ONNX_FILE = "minilm.onnx"
TOKENIZER_FILE = "minilm_tokenizer.json"


@dataclass(frozen=True)
class EmbedderIdentity:
    """What an index's vectors were made with; two embedders with different identities make
    vectors that must not be compared."""

    name: str
    version: str
    dimension: int

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "dimension": self.dimension}

    def __str__(self) -> str:
        return f"{self.name} version {self.version} ({self.dimension} dimensions)"


class Embedder(Protocol):
    identity: EmbedderIdentity

    async def embed(self, texts: list[str]) -> np.ndarray:
        """FP32 [n, dimension], L2-normalised."""
        ...

    async def close(self) -> None: ...


def default_onnx_dir() -> Path:
    """Where tools/install.d/40-triton.sh leaves the exported graphs (Triton's ONNX folder)."""
    from kubemind_predictors.triton.launcher import TritonInstall  # no Triton import: paths only

    return TritonInstall.default().onnx_dir


def graph_version(onnx_dir: Path) -> str:
    path = onnx_dir / ONNX_FILE
    if not path.is_file():
        raise InvalidSettings(
            f"--onnx_dir: {path} does not exist; run `make install` (tools/install.d/40-triton.sh exports it)"
        )
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


class OnnxEmbedder:
    """all-MiniLM-L6-v2 with ONNX Runtime in this process; one session, calls serialised."""

    def __init__(self, onnx_dir: Path, threads: int = 1):
        import onnxruntime
        from tokenizers import Tokenizer

        self.identity = EmbedderIdentity(MINILM, graph_version(onnx_dir), MINILM_DIMENSION)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(onnx_dir / ONNX_FILE), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(onnx_dir / TOKENIZER_FILE))
        self._tokenizer.enable_truncation(MINILM_MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._lock = threading.Lock()  # the tokenizer's padding state is per object

    async def embed(self, texts: list[str]) -> np.ndarray:
        # ONNX Runtime releases the GIL: run it in the executor, never on the event loop.
        return await asyncio.get_running_loop().run_in_executor(None, self.embed_blocking, texts)

    def embed_blocking(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.identity.dimension), dtype=np.float32)
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            output = self._session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
        return np.ascontiguousarray(output, dtype=np.float32)

    async def close(self) -> None:
        self._session = None


class TritonEmbedder:
    """Triton's `minilm` model over v2 gRPC (BYTES [n, 1] -> FP32 [n, 384], Triton's own
    signature): the `embedder` InferenceService (stock tritonserver) on a cluster."""

    def __init__(self, address: str, version: str, timeout: float = 10.0, model: str = MINILM):
        self.identity = EmbedderIdentity(MINILM, version, MINILM_DIMENSION)
        self.model = model
        self._client = OIPClient(address, RetryPolicy(timeout=timeout, retry_budget=1, backoff=0.05, cooldown=0.5))
        self._client.connect()

    async def embed(self, texts: list[str]) -> np.ndarray:
        array = np.array([t.encode("utf-8") for t in texts], dtype=np.object_).reshape(-1, 1)
        outputs = await self._client.infer(self.model, [Tensor("text", "BYTES", array)], outputs=("embedding",))
        return np.ascontiguousarray(outputs[0].array, dtype=np.float32)

    async def close(self) -> None:
        await self._client.close()


__all__ = ["MINILM", "Embedder", "EmbedderIdentity", "OnnxEmbedder", "TritonEmbedder", "default_onnx_dir", "graph_version"]
