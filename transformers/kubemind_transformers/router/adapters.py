"""Adapters: how a step's request is built from what the graph has so far.

KServe's router hands a step either the graph's request or the previous step's reply, unchanged,
so a classifier's v2 reply would reach an LLM as its request. A step's options can instead
declare its request: grpc-v2 steps name their tensors (`inputs: {image: <path to a tensor>}`),
LLM steps fill a prompt template (`prompt: "... {labels} ... {question}"`, `values: {labels: <path>}`).
Paths use the same gjson syntax as conditions, on the adapter context:

    {"request":  the graph's request (v2 view: inputs, parameters),
     "response": the step's data ($request or the previous step's reply, as KServe picks it),
     "steps":    {step name: that step's reply} for every step that ran so far}

A value that is missing (a soft step that was skipped) fills in as an empty string; arrays are
joined with ", " so top-k labels read as a list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kubemind.backend import Tensor
from kubemind.codecs import array_from_json
from kubemind.errors import InvalidInput
from kubemind_transformers.router.conditions import MISSING, get
from kubemind_transformers.router.graph import Step
from kubemind_transformers.router.messages import Message


def adapter_context(request: Message, data: Message, replies: Mapping[str, Message]) -> dict[str, Any]:
    return {
        "request": request.view(),
        "response": data.view(),
        "steps": {name: reply.view() for name, reply in replies.items()},
    }


def _tensor_of_view(view: Any) -> Tensor | None:
    """The Tensor behind a view (no copy), or one built from a plain v2 JSON tensor object."""
    tensor = getattr(view, "_tensor", None)
    if isinstance(tensor, Tensor):
        return tensor
    if isinstance(view, Mapping) and {"datatype", "shape", "data"} <= set(view):
        name = str(view.get("name", ""))
        return Tensor(name, str(view["datatype"]), array_from_json(name, str(view["datatype"]), view["shape"], view["data"]))
    return None


def step_tensors(step: Step, data: Message, context: Mapping[str, Any]) -> list[Tensor]:
    """The tensors a grpc-v2 step sends: its declared `inputs`, else all of its data's tensors."""
    if not step.options.inputs:
        return list(data.tensors)
    tensors = []
    for name, path in step.options.inputs.items():
        found = _tensor_of_view(get(context, path))
        if found is None:
            raise InvalidInput(f"{step.label}: input '{name}' ({path}) is not in the request")
        tensors.append(Tensor(name, found.datatype, found.array))
    return tensors


def _as_text(value: Any) -> str:
    if value is MISSING or value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return ", ".join(_as_text(item) for item in value)
    if isinstance(value, np.ndarray):
        return _as_text(value.tolist())
    return str(value)


def step_prompt(step: Step, data: Message, context: Mapping[str, Any]) -> str:
    """The prompt an LLM step sends: its template filled in, else its data's `text_input`."""
    if step.options.prompt is None:
        text = get(context, 'response.inputs.#(name=="text_input").data.0')
        if text is MISSING:
            text = get(context, 'response.outputs.#(name=="text_output").data.0')
        if text is MISSING or not _as_text(text):
            raise InvalidInput(f"{step.label}: the request has no text_input to prompt the model with")
        return _as_text(text)
    values = {key: _as_text(get(context, path)) for key, path in step.options.values.items()}
    return step.options.prompt.format(**values).strip()


__all__ = ["adapter_context", "step_prompt", "step_tensors"]
