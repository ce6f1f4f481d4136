"""Features of payloads: what the drift service and `models register --reference` measure.

One function turns a payload (a v2 request or response, an OpenAI or generate request or
response, as JSON, or a v2 gRPC message) into rows of named values, so the reference profile
and the live window are measured the same way:

- a numeric input of shape [batch, n] (n <= MAX_COLUMNS): one feature per column, `NAME[j]`;
- a numeric input with more dimensions (an image, [batch, h, w, c]): per row `NAME.mean` and
  `NAME.std` (a darkened camera shows in the mean long before any pixel column does);
- a text input (BYTES): `NAME.tokens`, its length in whitespace-separated tokens;
- responses are the prediction distribution: a class label output (BYTES) as a category
  `prediction:NAME`, a score matrix [batch, k] as its argmax class, a numeric output [batch]
  as a number;
- LLMs: `prompt_tokens` and `completion_tokens` (OpenAI `usage` when the reply has it, else
  whitespace tokens of the prompt and the text); a streamed reply counts as the reply its
  events add up to (`assembled_stream`). The same for a generation as v2 tensors (Triton's
  `text_input` / `text_output` BYTES, over gRPC or v2 REST): a profile built from one
  transport's traffic measures the other's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from kubemind.codecs import array_from_json
from kubemind.protocol.sse import DONE, BadEvent, event_data, read_event

MAX_COLUMNS = 32
Row = dict[str, float | str]
LLM_TEXT_TENSORS = {"text_input": "prompt_tokens", "text_output": "completion_tokens"}
"""A text generation's v2 tensors (Triton's vLLM backend, kubemind's generate over gRPC) and
the feature the OIP generate and OpenAI routes give the same text."""


def _tokens(text: Any) -> int:
    return len(str(text).split())


def _array(tensor: dict[str, Any]) -> np.ndarray:
    return np.asarray(array_from_json(str(tensor.get("name", "")), str(tensor["datatype"]), list(tensor["shape"]), tensor["data"]))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _tensor_rows(tensors: Iterable[tuple[str, str, np.ndarray]], prediction: bool) -> list[Row]:
    rows: list[Row] = []
    for name, datatype, array in tensors:
        if array.ndim == 0:
            array = array.reshape(1)
        per_row = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(-1, 1)
        while len(rows) < per_row.shape[0]:
            rows.append({})
        for index, values in enumerate(per_row):
            row = rows[index]
            if datatype == "BYTES":
                if prediction and name not in LLM_TEXT_TENSORS:
                    row[f"prediction:{name}"] = _text(values[0])
                else:
                    row[LLM_TEXT_TENSORS.get(name, f"{name}.tokens")] = float(sum(_tokens(_text(v)) for v in values))
            elif prediction:
                if values.size > 1:
                    row[f"prediction:{name}"] = str(int(np.argmax(values)))
                else:
                    row[f"prediction:{name}"] = float(values[0])
            elif array.ndim <= 2 and values.size <= MAX_COLUMNS:
                for column, value in enumerate(values):
                    row[f"{name}[{column}]"] = float(value)
            else:
                row[f"{name}.mean"] = float(np.mean(values))
                row[f"{name}.std"] = float(np.std(values))
    return rows


def rows_of(body: Any) -> list[Row]:
    """The feature rows of one JSON payload, whatever route it came from ([] if none)."""
    if not isinstance(body, dict):
        return []
    if "inputs" in body and isinstance(body["inputs"], list):
        return _tensor_rows(((t["name"], t["datatype"], _array(t)) for t in body["inputs"] if "data" in t), prediction=False)
    if "outputs" in body and isinstance(body["outputs"], list):
        return _tensor_rows(((t["name"], t["datatype"], _array(t)) for t in body["outputs"] if "data" in t), prediction=True)
    if "messages" in body:  # OpenAI chat request
        return [{"prompt_tokens": float(sum(_tokens(m.get("content") or "") for m in body["messages"] if isinstance(m, dict)))}]
    if "prompt" in body:  # OpenAI completion request
        return [{"prompt_tokens": float(_tokens(body["prompt"]))}]
    if "choices" in body:  # OpenAI reply
        usage = body.get("usage") or {}
        if "completion_tokens" in usage:
            return [{"completion_tokens": float(usage["completion_tokens"])}]
        texts = [(c.get("message") or {}).get("content") or c.get("text") or "" for c in body["choices"] if isinstance(c, dict)]
        return [{"completion_tokens": float(sum(_tokens(t) for t in texts))}]
    if "text_input" in body:  # OIP generate
        return [{"prompt_tokens": float(_tokens(body["text_input"]))}]
    if "text_output" in body:
        return [{"completion_tokens": float(_tokens(body["text_output"]))}]
    return []


def assembled_stream(body: bytes) -> Any:
    """A streamed reply's logged body (its SSE events as sent) as the one reply it adds up to:
    an OpenAI stream's text deltas (and `usage`, when its last chunk has it) as a completion,
    a v2 generate_stream's text as one `text_output`; None when it holds neither. An event that
    does not parse is skipped: the others still say what the reply was."""
    texts: list[str] = []
    usage: dict[str, Any] | None = None
    shape = None
    for line in body.decode("utf-8", "replace").splitlines():
        data = event_data(line)
        if data is None or data == DONE:
            continue
        try:
            event = read_event(data)
        except BadEvent:
            continue
        if event.shape is None:
            continue
        shape = event.shape
        texts.append(event.text)
        usage = event.usage or usage
    if shape == "openai":
        return {"choices": [{"message": {"content": "".join(texts)}}], **({"usage": usage} if usage else {})}
    if shape == "generate":
        return {"text_output": "".join(texts)}
    return None


def rows_of_grpc(message_bytes: bytes, response: bool) -> list[Row]:
    """The feature rows of a v2 gRPC ModelInferRequest / ModelInferResponse (the payload
    logger's protobuf events)."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.infer_type import InferRequest, InferResponse

    if response:
        reply = InferResponse.from_grpc(pb.ModelInferResponse.FromString(message_bytes))
        return _tensor_rows(((t.name, t.datatype, np.asarray(t.as_numpy())) for t in reply.outputs), prediction=True)
    request = InferRequest.from_grpc(pb.ModelInferRequest.FromString(message_bytes))
    return _tensor_rows(((t.name, t.datatype, np.asarray(t.as_numpy())) for t in request.inputs), prediction=False)


__all__ = ["Row", "assembled_stream", "rows_of", "rows_of_grpc"]
