"""Triton's bidirectional `ModelStreamInfer` RPC, as `tritonclient.grpc`'s `start_stream` /
`async_stream_infer` use it.

Every request on the stream runs through the one pipeline (record, lookup, readiness, deadline,
error table, metrics, access log) as its own request, concurrently with the others. An ordinary
model answers each request with one response. A text generator (the LLM predictor) answers
decoupled, the way Triton's vLLM backend does: `text_input` in, a `stream` flag (BOOL input or
request parameter), sampling options as request parameters or a `sampling_parameters` JSON
input; many responses carrying `text_output`, the last with the `triton_final_response`
parameter. A model that streams other inputs (`InferStreamer`: the inference router, whose
request holds an image next to the text) answers the same way when `stream` is set. Errors travel
in `error_message` and the stream goes on. When the client goes away,
everything still running for it is cancelled (which aborts generations in the engine). When the
server shuts down, what is still running at the end of the drain period ends with a "shutting
down" error message and the call ends with OK, as REST streams end with a final error event.

The payload logger logs each request on the stream as ModelInfer's are: its request event, and
one response event once its last response is sent, holding the one response they add up to
(a decoupled generation's whole text; `assembled_grpc_stream`), as a streamed REST reply's
response event is its whole body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

import grpc
import numpy as np
import orjson
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferRequest, InferResponse

from kubemind.codecs import decode_grpc_request, encode_grpc_response
from kubemind.errors import InvalidInput, ModelNotReady, as_kubemind_error
from kubemind.payload_logger import log_grpc_request, log_grpc_stream_response
from kubemind.protocol import triton_extensions_pb2 as ext
from kubemind.protocol.generate import TextGenerator
from kubemind.protocol.pipeline import Pipeline, stream_ended_by_shutdown
from kubemind.telemetry import RequestRecord

ENDPOINT = "ModelStreamInfer"
FINAL_FLAG = "triton_final_response"
_CONTROL_PARAMETERS = {"stream", "triton_enable_empty_final_response", "sequence_id", "sequence_start", "sequence_end", "priority", "timeout"}


@runtime_checkable
class InferStreamer(Protocol):
    """A model that answers one v2 request with a stream of v2 responses."""

    async def stream_infer(self, request: InferRequest, headers: dict[str, str]) -> AsyncIterator[InferResponse]:
        """The responses; validation and the work before the first one happen before the
        iterator is returned, so a bad request fails as a whole."""
        ...


def _stream_requested(request: Any) -> bool:
    flag = next((tensor for tensor in request.inputs if tensor.name == "stream"), None)
    if flag is not None:
        return bool(_first_value(flag))
    return bool(dict(request.parameters or {}).get("stream", False))


def _first_value(tensor: Any) -> Any:
    values = np.asarray(tensor.as_numpy()).reshape(-1)
    if values.size == 0:
        raise InvalidInput(f"input '{tensor.name}': is empty", param=tensor.name)
    return values[0]


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def generation_inputs(request: Any) -> tuple[str, bool, dict[str, Any]]:
    """Prompt, stream flag and sampling options of a Triton-vLLM-style request."""
    by_name = {tensor.name: tensor for tensor in request.inputs}
    if "text_input" not in by_name:
        raise InvalidInput("text_input: required (a BYTES input)", param="text_input")
    prompt = _text(_first_value(by_name["text_input"]))
    if not prompt:
        raise InvalidInput("text_input: must not be empty", param="text_input")
    parameters = dict(request.parameters or {})
    stream = bool(_first_value(by_name["stream"])) if "stream" in by_name else bool(parameters.get("stream", False))
    options = {k: v for k, v in parameters.items() if k not in _CONTROL_PARAMETERS}
    if "sampling_parameters" in by_name:
        try:
            sampling = orjson.loads(_text(_first_value(by_name["sampling_parameters"])))
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"sampling_parameters: not JSON ({exc})", param="sampling_parameters") from None
        if not isinstance(sampling, dict):
            raise InvalidInput("sampling_parameters: must be a JSON object", param="sampling_parameters")
        options.update(sampling)
    unknown = set(by_name) - {"text_input", "stream", "sampling_parameters", "exclude_input_in_output"}
    if unknown:
        raise InvalidInput(f"unknown input(s) {', '.join(sorted(unknown))} for a text generation model")
    return prompt, stream, options


def _text_response(model: str, version: str, request_id: str, text: str, final: bool) -> pb.ModelInferResponse:
    reply = pb.ModelInferResponse(model_name=model, model_version=version, id=request_id)
    reply.outputs.add(name="text_output", datatype="BYTES", shape=[1])
    encoded = text.encode("utf-8")
    reply.raw_output_contents.append(len(encoded).to_bytes(4, "little") + encoded)
    reply.parameters[FINAL_FLAG].bool_param = final
    return reply


class StreamInfer:
    """The handler of one ModelStreamInfer call."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.service = pipeline.service

    async def replies(self, message: pb.ModelInferRequest, record: RequestRecord) -> AsyncIterator[pb.ModelInferResponse]:
        request = decode_grpc_request(message, self.service.shared_memory)
        model, version = self.service.lookup(request.model_name, request.model_version)
        record.model, record.version = model.name, version
        if isinstance(model, InferStreamer) and _stream_requested(request):
            if not await self.service.is_ready(model):
                raise ModelNotReady(f"model '{record.model}' is not ready")
            held: InferResponse | None = None
            async for response in await model.stream_infer(request, record.headers):
                if held is not None:
                    yield self._flagged(held, request, version, final=False)
                held = response
            if held is not None:
                yield self._flagged(held, request, version, final=True)
            return
        if not isinstance(model, TextGenerator):
            response, served = await self.service.infer(request, record.headers, record)
            yield encode_grpc_response(response, request, served, self.service.shared_memory)
            return
        if not await self.service.is_ready(model):
            raise ModelNotReady(f"model '{record.model}' is not ready")
        prompt, stream, options = generation_inputs(request)
        request_id = request.id or ""
        if not stream:
            text = await model.generate_text(prompt, options)
            yield _text_response(record.model, version, request_id, text, final=True)
            return
        pending: str | None = None
        async for text, _finish in await model.stream_text(prompt, options):
            if pending is not None:
                yield _text_response(record.model, version, request_id, pending, final=False)
            pending = text
        yield _text_response(record.model, version, request_id, pending or "", final=True)

    def _flagged(self, response: InferResponse, request: Any, version: str, *, final: bool) -> pb.ModelInferResponse:
        reply = encode_grpc_response(response, request, version, self.service.shared_memory)
        reply.parameters[FINAL_FLAG].bool_param = final
        return reply

    async def one(
        self, message: pb.ModelInferRequest, metadata: Any, queue: asyncio.Queue[ext.ModelStreamInferResponse | None]
    ) -> None:
        record = self.pipeline.begin("grpc", ENDPOINT, message.model_name, ((k, str(v)) for k, v in metadata))
        # The payload logger's events, as for ModelInfer: the request's once its model is
        # resolved (before its first response) or once it failed; the response's once its last
        # response is sent, all of them as one (a request that failed or whose client went away
        # got no whole reply: none).
        payloads = self.pipeline.payloads
        request_logged = not payloads.enabled
        kept: list[pb.ModelInferResponse] | None = [] if payloads.keeps_stream_response(record) else None
        try:
            async with self.pipeline.deadline(f"{ENDPOINT} request"):
                async for reply in self.replies(message, record):
                    if not request_logged:
                        request_logged = True
                        log_grpc_request(payloads, record, message)
                    if kept is not None:
                        kept.append(reply)
                    await queue.put(ext.ModelStreamInferResponse(infer_response=reply.SerializeToString()))
            if kept is not None:
                log_grpc_stream_response(payloads, record, kept)
        except Exception as exc:
            await self._fail(record, exc, queue)
        except asyncio.CancelledError:
            if not self.pipeline.draining.is_set():
                raise  # the client went away: nobody reads the queue
            await self._fail(record, stream_ended_by_shutdown(), queue)
        finally:
            if not request_logged:
                log_grpc_request(payloads, record, message)
            self.pipeline.finish(record, account=True)

    @staticmethod
    async def _fail(
        record: RequestRecord, exc: Exception, queue: asyncio.Queue[ext.ModelStreamInferResponse | None]
    ) -> None:
        failure = as_kubemind_error(exc)
        record.status, record.error = int(failure.status), failure.message
        await queue.put(ext.ModelStreamInferResponse(error_message=failure.message))

    async def handle(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ext.ModelStreamInferResponse]:
        metadata = tuple(context.invocation_metadata() or ())
        # One queue for replies and, once the client stopped sending and every request has been
        # answered, the end-of-stream marker (None) after them.
        queue: asyncio.Queue[ext.ModelStreamInferResponse | None] = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()

        async def read() -> None:
            try:
                async for message in requests:
                    task = asyncio.create_task(self.one(message, metadata, queue))
                    running.add(task)
                    task.add_done_callback(running.discard)
                while running:
                    await asyncio.gather(*list(running), return_exceptions=True)
            finally:
                queue.put_nowait(None)

        async def end_when_drained() -> None:
            # Shutting down: what is still running when the drain period ends gets its final
            # error message, then the call ends with OK before the server's grace limit cuts it.
            await self.pipeline.draining.wait()
            await asyncio.sleep(self.pipeline.drain_seconds_left())
            for task in list(running):
                task.cancel()
            await asyncio.gather(*list(running), return_exceptions=True)
            reader.cancel()

        reader = asyncio.create_task(read())
        drain = asyncio.create_task(end_when_drained())
        try:
            while (reply := await queue.get()) is not None:
                yield reply
        finally:
            drain.cancel()
            reader.cancel()
            for task in list(running):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


__all__ = ["InferStreamer", "StreamInfer", "generation_inputs"]
