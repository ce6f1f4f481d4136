"""Range checks on sampling parameters, so a bad value is a 400 that names the parameter.

vLLM validates too, but its messages do not always say which field was wrong, and some of its
checks fire only once the request reaches the engine.
"""

from __future__ import annotations

import math
import re
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
    "min_p": ((int, float), lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "min_tokens": ((int,), lambda v: v >= 0, "an integer >= 0"),
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
            raise InvalidInput(f"{name}: must be {expected}, got {value!r}", param=name)
    stop = fields.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise InvalidInput(f"stop: must be a string or a list of strings, got {stop!r}", param="stop")
    if stop == "" or (isinstance(stop, list) and "" in stop):
        raise InvalidInput("stop: must not hold an empty string", param="stop")
    min_tokens, max_tokens = fields.get("min_tokens"), fields.get("max_tokens")
    if isinstance(min_tokens, int) and isinstance(max_tokens, int) and min_tokens > max_tokens:
        raise InvalidInput(f"min_tokens: {min_tokens} is more than max_tokens {max_tokens}", param="min_tokens")
    _validate_structured_outputs(fields)
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


def _validate_structured_outputs(fields: Mapping[str, Any]) -> None:
    """A regex or a JSON schema the engine would choke on is the request's fault: check it here,
    where the field can be named (the engine answers a bad regex with an empty server error)."""
    structured = fields.get("structured_outputs")
    if isinstance(structured, Mapping):
        regex = structured.get("regex")
        if regex is not None:
            _check_regex(regex, "structured_outputs.regex")
        schema = structured.get("json")
        if isinstance(schema, Mapping):
            _check_schema(schema, "structured_outputs.json")
    response_format = fields.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
        json_schema = response_format.get("json_schema")
        # "schema" on the wire; vLLM's request class holds it as `json_schema` (an alias).
        schema = (json_schema.get("schema") or json_schema.get("json_schema")) if isinstance(json_schema, Mapping) else None
        if isinstance(schema, Mapping):
            _check_schema(schema, "response_format")


def _check_regex(regex: Any, field: str) -> None:
    if not isinstance(regex, str):
        raise InvalidInput(f"{field}: must be a string", param=field.split(".")[0])
    try:
        re.compile(regex)
    except re.error as exc:
        raise InvalidInput(f"{field}: not a valid regular expression ({exc})", param=field.split(".")[0]) from None


def _check_schema(schema: Mapping[str, Any], field: str) -> None:
    try:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError
    except ImportError:  # pragma: no cover - the engine still refuses it, without the field
        return
    try:
        Draft202012Validator.check_schema(dict(schema))
    except SchemaError as exc:
        raise InvalidInput(f"{field}: not a valid JSON schema ({exc.message})", param=field.split(".")[0]) from None
