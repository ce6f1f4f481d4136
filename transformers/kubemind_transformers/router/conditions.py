"""The path and condition syntax of KServe's InferenceGraph, a subset of gjson
(github.com/tidwall/gjson), evaluated on Python values instead of JSON text.

KServe's router picks a `Switch` branch, or stops a `Sequence`, by `gjson.Get(body, condition).Exists()`.
kubemind evaluates the same expressions on the message's JSON view (`Message.view()`), so a graph
written for KServe's router means the same here. Supported:

- keys separated by `.` (`\\.` escapes a dot), `*` and `?` wildcards in keys, array indexes (`data.0`);
- `#` (an array's length, or, followed by a path, that path of every element);
- queries `#(path op value)` (first match) and `#(path op value)#` (every match), with
  `==`, `=`, `!=`, `<`, `<=`, `>`, `>=`, `%` (pattern) and `!%`; `#(path)` alone matches elements
  where the path exists and is truthy; queries nest (`#(nets.#(=="fb"))`);
- `@this` and multipaths `[a,b]` (an array of those that exist).

Not supported (refused when the graph is loaded, not silently false): pipes `|`, modifiers other
than `@this`, object multipaths `{a,b}`.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Mapping, Sequence
from typing import Any

from kubemind.errors import InvalidInput


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""What a path that leads nowhere evaluates to (gjson's non-existent result)."""

# Longest first, so `<=` is not read as `<`.
_OPERATORS = ("!%", "==", "!=", "<=", ">=", "%", "<", ">", "=")


class ConditionSyntaxError(InvalidInput):
    """A condition or path uses syntax this evaluator does not implement."""


def _is_array(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


@functools.lru_cache(maxsize=1024)
def split_path(path: str) -> tuple[str, ...]:
    """Components of a path: `.` at depth 0 (outside (), [], {} and quotes); `\\.` stays a dot.
    Cached: a graph's paths are few and evaluated on every request."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = False
    index = 0
    while index < len(path):
        char = path[index]
        if char == "\\" and index + 1 < len(path):
            current.append(path[index : index + 2])
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "([{":
            depth += 1
        elif not quoted and char in ")]}":
            depth -= 1
        elif not quoted and depth == 0 and char == ".":
            parts.append("".join(current))
            current = []
            index += 1
            continue
        elif not quoted and depth == 0 and char == "|":
            raise ConditionSyntaxError(f"condition {path!r}: pipes ('|') are not supported")
        current.append(char)
        index += 1
    if depth != 0 or quoted:
        raise ConditionSyntaxError(f"condition {path!r}: unbalanced brackets or quotes")
    parts.append("".join(current))
    return tuple(parts)


@functools.lru_cache(maxsize=1024)
def _split_top_level(text: str, separator: str) -> tuple[str, ...]:
    items: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "([{":
            depth += 1
        elif not quoted and char in ")]}":
            depth -= 1
        if char == separator and depth == 0 and not quoted:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return tuple(items)


def _unescape(key: str) -> str:
    return key.replace("\\.", ".").replace("\\*", "*").replace("\\?", "?")


def _has_wildcard(key: str) -> bool:
    stripped = key.replace("\\*", "").replace("\\?", "")
    return "*" in stripped or "?" in stripped


def get(value: Any, path: str) -> Any:
    """The value at `path`, or MISSING."""
    if path == "":
        return MISSING
    return _walk(value, split_path(path))


def exists(value: Any, path: str) -> bool:
    """gjson's `Get(...).Exists()`: KServe's test for a condition."""
    return get(value, path) is not MISSING


def check_syntax(path: str) -> None:
    """Raise ConditionSyntaxError for syntax `get` would not understand (done at graph load)."""
    for part in split_path(path):
        if part.startswith("{"):
            raise ConditionSyntaxError(f"condition {path!r}: object multipaths ('{{...}}') are not supported")
        if part.startswith("@") and part != "@this":
            raise ConditionSyntaxError(f"condition {path!r}: modifier {part!r} is not supported (only @this)")
        if part.startswith("[") and part.endswith("]"):
            for item in _split_top_level(part[1:-1], ","):
                check_syntax(item.strip())
        if part.startswith("#(") and (part.endswith(")") or part.endswith(")#")):
            left, _op, _right = _parse_query(part[2 : part.rindex(")")])
            if left:
                check_syntax(left)


def _walk(value: Any, parts: tuple[str, ...]) -> Any:
    if value is MISSING:
        return MISSING
    if not parts:
        return value
    head, rest = parts[0], parts[1:]
    if head == "@this":
        return _walk(value, rest)
    if head.startswith("[") and head.endswith("]"):
        found = [get(value, item.strip()) for item in _split_top_level(head[1:-1], ",")]
        return _walk([item for item in found if item is not MISSING], rest)
    if head == "#":
        if not _is_array(value):
            return MISSING
        if not rest:
            return len(value)
        mapped = [_walk(item, rest) for item in value]
        return [item for item in mapped if item is not MISSING]
    if head.startswith("#(") and (head.endswith(")") or head.endswith(")#")):
        if not _is_array(value):
            return MISSING
        every = head.endswith(")#")
        query = _parse_query(head[2 : head.rindex(")")])
        matches = [item for item in value if _matches(item, query)]
        if every:
            mapped = [_walk(item, rest) for item in matches]
            return [item for item in mapped if item is not MISSING]
        return _walk(matches[0], rest) if matches else MISSING
    if isinstance(value, Mapping):
        if _has_wildcard(head):
            for key in value:
                if fnmatch.fnmatchcase(str(key), head):
                    return _walk(value[key], rest)
            return MISSING
        key = _unescape(head)
        return _walk(value[key], rest) if key in value else MISSING
    if _is_array(value) and head.isdigit():
        index = int(head)
        return _walk(value[index], rest) if index < len(value) else MISSING
    return MISSING


@functools.lru_cache(maxsize=1024)
def _parse_query(query: str) -> tuple[str, str, str]:
    """`left op right` of a query (op '' when the query is a bare path)."""
    depth, quoted, index = 0, False, 0
    while index < len(query):
        char = query[index]
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "([{":
            depth += 1
        elif not quoted and char in ")]}":
            depth -= 1
        elif not quoted and depth == 0:
            for op in _OPERATORS:
                if query.startswith(op, index):
                    return query[:index].strip(), op, query[index + len(op) :].strip()
        index += 1
    return query.strip(), "", ""


def _literal(raw: str) -> Any:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1].replace('\\"', '"')
    return raw  # gjson compares an unquoted right side as text against a string value


def _number(raw: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        return None


def _truthy(value: Any) -> bool:
    return value is not MISSING and value is not None and value is not False and value != 0 and value != ""


def _matches(item: Any, query: tuple[str, str, str]) -> bool:
    left, op, right = query
    value = item if left == "" else get(item, left)
    if not op:
        return _truthy(value)
    if value is MISSING:
        return False
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, bool):
        value, expected = str(value).lower(), right
    elif isinstance(value, int | float):
        number = _number(right)
        if number is None:
            return op in ("!=", "!%")
        return _compare(float(value), op, number)
    elif isinstance(value, str):
        expected = _literal(right)
    else:
        return False
    if op == "%":
        return fnmatch.fnmatchcase(value, expected)
    if op == "!%":
        return not fnmatch.fnmatchcase(value, expected)
    return _compare(value, op, expected)


def _compare(left: Any, op: str, right: Any) -> bool:
    if op in ("==", "="):
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    return False


__all__ = ["MISSING", "ConditionSyntaxError", "check_syntax", "exists", "get", "split_path"]
