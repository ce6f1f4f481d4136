"""What flows between the steps of a graph: named tensors plus parameters, with a JSON view.

Tensors stay numpy arrays from hop to hop (an image is never turned into JSON and back); the
conditions and adapters of a graph read the message's *view*, the v2 JSON shape a REST client
would see (`{"inputs": [{"name", "datatype", "shape", "data"}], "parameters": {...}}`, or
`"outputs"` for a step's reply), built lazily so a condition that never reads `data` costs nothing.
An Ensemble's merged result is KServe's: `{step name: that step's view}`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kubemind.backend import Tensor
from kubemind.codecs import array_to_json

TEXT_OUTPUT = "text_output"


class _TensorView(Mapping[str, Any]):
    """One tensor as v2 JSON; `data` is computed on first read."""

    def __init__(self, tensor: Tensor):
        self._tensor = tensor
        self._data: Any = None

    def __getitem__(self, key: str) -> Any:
        if key == "name":
            return self._tensor.name
        if key == "datatype":
            return self._tensor.datatype
        if key == "shape":
            return list(self._tensor.array.shape)
        if key == "data":
            if self._data is None:
                data = array_to_json(self._tensor.name, self._tensor.array, self._tensor.datatype)
                self._data = data.tolist() if isinstance(data, np.ndarray) else data
            return self._data
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(("name", "datatype", "shape", "data"))

    def __len__(self) -> int:
        return 4


@dataclass
class Message:
    """A request (role "inputs") or a step's reply (role "outputs")."""

    tensors: list[Tensor]
    role: str = "outputs"
    parameters: dict[str, Any] = field(default_factory=dict)
    model_name: str = ""
    parts: dict[str, Message] | None = None
    """An Ensemble's merged result: each branch's reply by step name (tensors then hold them
    all, named `step.tensor`)."""

    def tensor(self, name: str) -> Tensor | None:
        return next((t for t in self.tensors if t.name == name), None)

    def view(self) -> Mapping[str, Any]:
        if self.parts is not None:
            return {name: part.view() for name, part in self.parts.items()}
        view: dict[str, Any] = {self.role: [_TensorView(t) for t in self.tensors]}
        if self.parameters:
            view["parameters"] = self.parameters
        if self.model_name:
            view["model_name"] = self.model_name
        return view

    @classmethod
    def merged(cls, parts: dict[str, Message]) -> Message:
        tensors = [
            Tensor(f"{step}.{tensor.name}", tensor.datatype, tensor.array)
            for step, part in parts.items()
            for tensor in part.tensors
        ]
        return cls(tensors, "outputs", parts=parts)

    def text(self) -> str | None:
        """The generated text of an LLM step's reply, None when the message has none."""
        tensor = self.tensor(TEXT_OUTPUT)
        if tensor is None or tensor.array.size == 0:
            return None
        value = tensor.array.reshape(-1)[0]
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def text_message(text: str, model_name: str = "") -> Message:
    """An LLM step's reply: one BYTES `text_output`, as the vLLM predictor's v2 infer answers."""
    array = np.empty(1, dtype=np.object_)
    array[0] = text.encode("utf-8")
    return Message([Tensor(TEXT_OUTPUT, "BYTES", array)], "outputs", model_name=model_name)


def bytes_tensor(name: str, values: list[bytes]) -> Tensor:
    array = np.empty(len(values), dtype=np.object_)
    array[:] = values
    return Tensor(name, "BYTES", array)


__all__ = ["TEXT_OUTPUT", "Message", "bytes_tensor", "text_message"]
