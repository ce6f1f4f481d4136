"""YAML loading with bounds, for files a user hands to `kubemind validate`.

PyYAML shares the node an alias points to, so a 422-byte "billion laughs" document loads in
no time, but every check that walks the result (and every message that prints a value) expands
it: 107 s and 9 GB. And each check recurses, so a document nested 5000 deep is a RecursionError.
The loader here refuses both before any object is built: the document's size with every alias
expanded, and its nesting depth, are counted on the node graph (with memoisation, so counting
a bomb is cheap).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

# Kubernetes objects are far below both: the whole KServe CRD is ~60 000 nodes, ~30 deep.
MAX_EXPANDED_NODES = 1_000_000
MAX_DEPTH = 100


class YamlTooLarge(yaml.YAMLError):
    """A document over the alias-expansion or nesting bounds."""


_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class BoundedSafeLoader(_Base):
    """SafeLoader (the C one when available) that checks each document's node graph first."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_bounds(node)
        return super().construct_document(node)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_bounds(root: yaml.Node) -> None:
    """Expanded size and depth of a node graph, iteratively (no recursion to exhaust)."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool, int]] = [(root, False, 1)]
    while stack:
        node, children_done, depth = stack.pop()
        key = id(node)
        if depth > MAX_DEPTH:
            raise YamlTooLarge(
                f"document is nested more than {MAX_DEPTH} levels deep (line {node.start_mark.line + 1})"
            )
        if children_done:
            on_path.discard(key)
            kids = _children(node)
            sizes[key] = 1 + sum(sizes[id(kid)] for kid in kids)
            depths[key] = 1 + max((depths[id(kid)] for kid in kids), default=0)
            if sizes[key] > MAX_EXPANDED_NODES:
                raise YamlTooLarge(
                    f"document expands to more than {MAX_EXPANDED_NODES} nodes once its aliases are "
                    "resolved (an alias bomb?)"
                )
            continue
        if key in sizes:
            if depth + depths[key] - 1 > MAX_DEPTH:
                raise YamlTooLarge(f"document is nested more than {MAX_DEPTH} levels deep")
            continue
        if key in on_path:
            raise YamlTooLarge(f"document has a recursive alias (line {node.start_mark.line + 1})")
        on_path.add(key)
        stack.append((node, True, depth))
        for kid in _children(node):
            if id(kid) not in sizes:
                stack.append((kid, False, depth + 1))
            elif depth + depths[id(kid)] > MAX_DEPTH:
                raise YamlTooLarge(f"document is nested more than {MAX_DEPTH} levels deep")


def load_all(text: str) -> Iterator[Any]:
    """The documents of a YAML stream, each within the bounds (YAMLError otherwise)."""
    loader = BoundedSafeLoader(text)
    try:
        while True:
            try:
                if not loader.check_data():
                    break
                document = loader.get_data()
            except RecursionError:  # the pure-Python composer recurses per nesting level
                raise YamlTooLarge(f"document is nested more than {MAX_DEPTH} levels deep") from None
            yield document
    finally:
        loader.dispose()


def load(text: str) -> Any:
    """The single document of a YAML text (None when empty), within the bounds."""
    documents = list(load_all(text))
    return documents[0] if documents else None


def describe_error(exc: yaml.YAMLError, limit: int = 300) -> str:
    """A YAML error for a message: never longer than `limit` (PyYAML quotes the source)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["MAX_DEPTH", "MAX_EXPANDED_NODES", "YamlTooLarge", "describe_error", "load", "load_all"]
