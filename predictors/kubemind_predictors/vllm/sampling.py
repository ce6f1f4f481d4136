"""Range checks on sampling parameters, so a bad value is a 400 that names the parameter.

vLLM validates too, but its messages do not always say which field was wrong, and some of its
checks fire only once the request reaches the engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from kubemind.errors import InvalidInput

# parameter -> (accepted types, check on the value, what the value must be)
_RULES: dict[str, tuple[tuple[type, ...], Callable[[Any], bool], str]] = {
    "temperature": ((int, float), lambda v: 0 <= v <= 100, "a number >= 0"),
    "top_p": ((int, float), lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "top_k": ((int,), lambda v: v >= -1, "an integer >= -1 (-1 and 0 disable it)"),
    "max_tokens": ((int,), lambda v: v >= 1, "an integer >= 1"),
    "max_completion_tokens": ((int,), lambda v: v >= 1, "an integer >= 1"),
    "n": ((int,), lambda v: 1 <= v <= 16, "an integer in [1, 16]"),
    "seed": ((int,), lambda v: True, "an integer"),
    "logprobs": ((int,), lambda v: 0 <= v <= 20, "an integer in [0, 20]"),
    "top_logprobs": ((int,), lambda v: 0 <= v <= 20, "an integer in [0, 20]"),
    "presence_penalty": ((int, float), lambda v: -2 <= v <= 2, "a number in [-2, 2]"),
    "frequency_penalty": ((int, float), lambda v: -2 <= v <= 2, "a number in [-2, 2]"),
    "repetition_penalty": ((int, float), lambda v: v > 0, "a number > 0"),
}


def validate_sampling_fields(fields: Mapping[str, Any]) -> None:
    """Raise InvalidInput naming the first out-of-range or mistyped sampling parameter."""
    for name, (types, in_range, expected) in _RULES.items():
        value = fields.get(name)
        if value is None:
            continue
        # bool is an int subclass; "logprobs": true is a chat flag, not a count
        if name == "logprobs" and isinstance(value, bool):
            continue
        wrong_type = isinstance(value, bool) or not isinstance(value, types)
        if wrong_type or (isinstance(value, float) and math.isnan(value)) or not in_range(value):
            raise InvalidInput(f"{name}: must be {expected}, got {value!r}")
    stop = fields.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise InvalidInput(f"stop: must be a string or a list of strings, got {stop!r}")
    for name in ("bad_words",):
        words = fields.get(name)
        if words is not None and not (isinstance(words, list) and all(isinstance(w, str) and w for w in words)):
            raise InvalidInput(f"{name}: must be a list of non-empty strings, got {words!r}", param=name)


def validate_single_sequence(fields: Mapping[str, Any]) -> None:
    """The v2 and generate replies hold one text per prompt: n (and best_of) must be 1."""
    for name in ("n", "best_of"):
        value = fields.get(name)
        if value is not None and value != 1:
            raise InvalidInput(f"{name}: only 1 is supported on v2 infer and generate, got {value!r}", param=name)
