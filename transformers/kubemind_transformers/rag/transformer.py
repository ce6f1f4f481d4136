"""`RagTransformer`: a question in, a grounded answer with its sources out.

Routes, all on the one request pipeline:
- OpenAI chat (`/openai/v1/chat/completions`, `model` = this model): the last user message is the
  question; `stream: true` passes the LLM's tokens through as chat chunks (the first carries the
  sources). Extra body fields: `filter` ({field: value | [values]} over source, corpus, title,
  position) and `user` (OpenAI's own field; else the `x-user-id` header).
- v2 infer (REST and gRPC): `text_input` BYTES [1] -> `text_output` BYTES [1] and `sources` BYTES
  [1] (JSON); request parameters `user` and `filter` (a JSON object as a string).
Every reply says which chunks it used (`sources`: id, source, title, score) and whether Feast's
features were available (`features`).

At start the index manifest is read and the embedder is checked against it: an index built with
another embedder stops the transformer, with both named.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from kserve.protocol.infer_type import InferRequest, InferResponse
from prometheus_client.registry import Collector

from kubemind.codecs import NumpyOutput
from kubemind.errors import OPENAI, InvalidInput, InvalidSettings, ModelNotReady
from kubemind.model import KubemindModel, TensorSpec
from kubemind.protocol.pipeline import SSE_DONE, EventStream, Route, RouteCall
from kubemind.telemetry import RequestRecord
from kubemind_transformers.rag.features import FeatureRepo, OnlineFeatures
from kubemind_transformers.rag.index import (
    IndexManifest,
    build_embedder,
    build_index,
    check_embedder,
    open_store,
)
from kubemind_transformers.rag.metrics import RagMetrics
from kubemind_transformers.rag.prompt import DEFAULT_TEMPLATE, build_prompt, check_template
from kubemind_transformers.rag.retrieval import Retrieval, Retriever
from kubemind_transformers.rag.settings import IndexSettings, RagSettings
from kubemind_transformers.rag.store import ChunkStore
from kubemind_transformers.router.graph import Step, StepOptions
from kubemind_transformers.router.messages import bytes_tensor
from kubemind_transformers.router.model import last_user_message
from kubemind_transformers.router.steps import (
    Call,
    ServiceClients,
    call_llm,
    sampling_of,
    stream_llm,
)

TEXT_INPUT = "text_input"


class RagTransformer(KubemindModel):
    platform = "kubemind-rag"
    backend = "rag"

    def __init__(self, settings: RagSettings):
        super().__init__(
            settings.model_name,
            inputs=[TensorSpec(TEXT_INPUT, "BYTES", (1,))],
            outputs=[TensorSpec("text_output", "BYTES", (1,)), TensorSpec("sources", "BYTES", (1,))],
        )
        self.settings = settings
        self.template = check_template(settings.prompt_template or DEFAULT_TEMPLATE)
        self.metrics = RagMetrics()
        self.clients = ServiceClients(retry_budget=0)
        self.llm = Step(
            name="llm", where=f"rag '{settings.model_name}' llm", service=settings.llm_model,
            options=StepOptions(protocol="openai-chat", model=settings.llm_model, timeout_seconds=settings.llm_timeout_seconds,
                                parameters={"max_tokens": settings.max_tokens}),
        )  # fmt: skip
        # KServe's Model sets engine False; True makes the server run start_engine() in the
        # background (and stop_engine() at the end): Milvus, Feast and the embedder open there.
        self.engine = True
        self.manifest: IndexManifest | None = None
        self.retriever: Retriever | None = None
        self._store: ChunkStore | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def load(self) -> bool:
        """Read the index manifest (indexing the demo corpus first when asked and missing) and
        check that the embedder is the index's. Milvus and Feast are opened in start()."""
        index_dir = Path(self.settings.index_dir)
        manifest = IndexManifest.read(index_dir)
        if manifest is None and not self.settings.index_corpus:
            raise InvalidSettings(
                f"--index_dir: {index_dir} holds no index.json; build one with `kubemind rag index --index_dir {index_dir}`"
            )
        self.manifest = manifest
        self.ready = True
        return self.ready

    def start(self) -> None:
        self.clients.start([])

    async def start_engine(self) -> None:
        """Opened on the event loop: the embedder (Triton's channel lives on it), Milvus, Feast."""
        settings = self.settings
        embedder = build_embedder(settings)
        store = open_store(settings, timeout=settings.milvus_timeout_seconds)
        if self.manifest is None or not store.exists():
            index = IndexSettings(**{k: getattr(settings, k) for k in IndexSettings.model_fields if hasattr(settings, k)}
                                  | {"corpus": settings.index_corpus})  # fmt: skip
            store.timeout = 60.0
            self.manifest = (await build_index(index, embedder, store)).manifest
            store.timeout = settings.milvus_timeout_seconds
        check_embedder(self.manifest, embedder.identity)
        store.load()
        features = None
        if settings.feature_repo:
            repo = FeatureRepo(Path(settings.feature_repo), settings.feature_online_store, config=settings.feature_store_yaml)
            features = OnlineFeatures(repo)
        self._store = store
        self.retriever = Retriever(settings, embedder, store, features, self.metrics)

    def stop_engine(self) -> None:
        if self._store is not None:
            self._store.close()

    async def stop_async(self) -> None:
        await self.clients.close()
        if self.retriever is not None:
            await self.retriever.embedder.close()

    async def healthy(self) -> bool:
        return self.retriever is not None

    def collectors(self) -> Sequence[Collector]:
        return self.metrics.collectors()

    def _retriever(self) -> Retriever:
        if self.retriever is None:
            raise ModelNotReady(f"model '{self.name}' is still opening its index")
        return self.retriever

    # -- one answer --------------------------------------------------------------------------------
    async def _retrieve(self, question: str, user: str | None, metadata_filter: Any, record: RequestRecord | None) -> tuple[Retrieval, str]:
        retriever = self._retriever()
        retrieval = await retriever.retrieve(question, user=user, metadata_filter=metadata_filter, record=record)
        started = time.perf_counter()
        prompt = build_prompt(self.template, question, retrieval.hits, retrieval.features.user)
        retriever._observe(retrieval.seconds, "prompt", started, record)
        return retrieval, prompt

    def _call(self, headers: dict[str, str], sampling: dict[str, Any]) -> Call:
        return Call(self.settings.llm_url, headers, self.settings.llm_timeout_seconds, sampling)

    def _observe_llm(self, stage: str, started: float, record: RequestRecord | None) -> None:
        self._retriever()._observe({}, stage, started, record)

    async def answer(self, question: str, user: str | None, metadata_filter: Any, headers: dict[str, str],
                     sampling: dict[str, Any], record: RequestRecord | None = None) -> tuple[str, Retrieval]:  # fmt: skip
        retrieval, prompt = await self._retrieve(question, user, metadata_filter, record)
        started = time.perf_counter()
        message = await call_llm(self.clients, self.llm, self._call(headers, sampling), prompt)
        self._observe_llm("llm", started, record)
        return message.text() or "", retrieval

    async def answer_stream(self, question: str, user: str | None, metadata_filter: Any, headers: dict[str, str],
                            sampling: dict[str, Any], record: RequestRecord | None = None
                            ) -> tuple[AsyncIterator[tuple[str, str | None]], Retrieval]:  # fmt: skip
        retrieval, prompt = await self._retrieve(question, user, metadata_filter, record)
        started = time.perf_counter()
        deltas = await stream_llm(self.clients, self.llm, self._call(headers, sampling), prompt)

        async def timed() -> AsyncIterator[tuple[str, str | None]]:
            first = True
            async for delta in deltas:
                if first:
                    self._observe_llm("llm_ttft", started, record)
                    first = False
                yield delta
            self._observe_llm("llm", started, record)

        return timed(), retrieval

    # -- OpenAI chat -------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [Route("POST", "/openai/v1/chat/completions", "openai_chat_completions", self._chat, protocol=OPENAI,
                      model_in_body=True)]  # fmt: skip

    async def _chat(self, call: RouteCall) -> dict[str, Any] | EventStream:
        body = call.body if isinstance(call.body, dict) else {}
        question = self._retriever().check_question(_last_user_text(body), "messages")
        user = body.get("user") or call.headers.get(self.settings.user_header) or call.request.headers.get(self.settings.user_header)
        sampling = sampling_of(body)
        if body.get("max_completion_tokens") is not None:
            sampling["max_tokens"] = body["max_completion_tokens"]
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": completion_id, "created": created, "model": self.name}
        if not body.get("stream"):
            text, retrieval = await self.answer(question, user, body.get("filter"), call.headers, sampling, call.record)
            return head | {
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            } | _grounding(retrieval)
        deltas, retrieval = await self.answer_stream(question, user, body.get("filter"), call.headers, sampling, call.record)

        async def chunks() -> AsyncIterator[dict[str, Any] | str]:
            first = True
            async for text, finish in deltas:
                delta: dict[str, Any] = {"role": "assistant", "content": text} if first else {"content": text}
                chunk = head | {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                yield chunk | (_grounding(retrieval) if first else {})
                first = False
            yield SSE_DONE

        return EventStream(chunks())

    # -- v2 infer ----------------------------------------------------------------------------------
    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> InferResponse:  # fmt: skip
        raw = payload.inputs[0].as_numpy().reshape(-1)[0]
        question = self._retriever().check_question(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw), TEXT_INPUT)
        parameters = dict(payload.parameters or {})
        metadata_filter = parameters.get("filter")
        if isinstance(metadata_filter, str):
            try:
                metadata_filter = orjson.loads(metadata_filter)
            except orjson.JSONDecodeError:
                raise InvalidInput("filter: not a JSON object", param="filter") from None
        headers = dict(headers or {})
        user = parameters.get("user") or headers.get(self.settings.user_header)
        text, retrieval = await self.answer(question, user, metadata_filter, headers, sampling_of(parameters))
        grounding = orjson.dumps(_grounding(retrieval))
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            model_version=payload.model_version,
            infer_outputs=[
                NumpyOutput("text_output", bytes_tensor("text_output", [text.encode()]).array, "BYTES"),
                NumpyOutput("sources", bytes_tensor("sources", [grounding]).array, "BYTES"),
            ],
        )


def _grounding(retrieval: Retrieval) -> dict[str, Any]:
    return {"sources": [hit.as_source() for hit in retrieval.hits], "features": retrieval.features_body()}


def _last_user_text(body: dict[str, Any]) -> str:
    content = last_user_message(body).get("content")
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content if isinstance(content, str) else ""


__all__ = ["RagTransformer"]
