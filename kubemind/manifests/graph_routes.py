"""InferenceGraph routes that cannot run: a step naming a node that does not exist, or a path
from `root` that comes back to a node it already passed (KServe's webhook checks neither; its
router recurses until the request times out).

One function for both users: `kubemind validate` reports these as problems, and the inference
router refuses such a graph at start with the same message.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from kubemind.manifests.problems import FieldPath, ManifestObject, Problem

ROOT = "root"
STEPS_ANNOTATION = "kubemind.io/router-steps"
# The router owns the annotation's format; it is imported only when a graph carries one, the way
# component_args imports a component's settings class, so the core does not depend on it.
ANNOTATION_CHECKER = "kubemind_transformers.router.graph:steps_annotation_problem"


def step_label(node: str, index: int, step: Mapping[str, Any]) -> str:
    return f"{node}.steps[{index}] '{step.get('name') or f'{node}-{index}'}'"


def route_problems(nodes: Mapping[str, Any]) -> list[tuple[FieldPath, str]]:
    """(field path, message) for each unknown nodeName and each cycle, walking from root."""
    problems: list[tuple[FieldPath, str]] = []
    reported: set[tuple[str, int]] = set()

    def steps_of(node: str) -> list[Mapping[str, Any]]:
        body = nodes.get(node)
        steps = body.get("steps") if isinstance(body, Mapping) else None
        return [s for s in steps if isinstance(s, Mapping)] if isinstance(steps, list) else []

    def visit(node: str, path: list[str], seen: tuple[str, ...]) -> None:
        for index, step in enumerate(steps_of(node)):
            target = step.get("nodeName")
            if not target or (node, index) in reported:
                continue
            hop = f"{step_label(node, index, step)} -> node '{target}'"
            route = " -> ".join([*path, hop])
            field: FieldPath = ("spec", "nodes", node, "steps", index, "nodeName")
            if target not in nodes:
                reported.add((node, index))
                problems.append((field, f"unknown node '{target}' at {route} (nodes: {', '.join(sorted(nodes))})"))
            elif target in seen:
                reported.add((node, index))
                problems.append((field, f"cycle {route}"))
            else:
                visit(str(target), [*path, hop], (*seen, str(target)))

    if ROOT in nodes:
        visit(ROOT, [], (ROOT,))
    for node in nodes:  # nodes root never reaches: their unknown names are still mistakes
        for index, step in enumerate(steps_of(node)):
            target = step.get("nodeName")
            if target and target not in nodes and (node, index) not in reported:
                problems.append((("spec", "nodes", node, "steps", index, "nodeName"),
                                 f"unknown node '{target}' at {step_label(node, index, step)} (nodes: {', '.join(sorted(nodes))})"))
    return problems


def check_graph_routes(obj: ManifestObject) -> Iterator[Problem]:
    if obj.kind != "InferenceGraph" or obj.group != "serving.kserve.io":
        return
    nodes = (obj.body.get("spec") or {}).get("nodes")
    routes = route_problems(nodes) if isinstance(nodes, Mapping) else []
    for field, message in routes:
        yield Problem.at(obj, field, message)
    annotations = (obj.body.get("metadata") or {}).get("annotations")
    if not routes and isinstance(annotations, Mapping) and STEPS_ANNOTATION in annotations:
        module_name, _, function = ANNOTATION_CHECKER.partition(":")
        try:
            problem = getattr(importlib.import_module(module_name), function)(obj.body)
        except ImportError as exc:
            problem = f"cannot check {STEPS_ANNOTATION}: the router ({module_name}) cannot be imported: {exc}"
        if problem:
            yield Problem.at(obj, ("metadata", "annotations", STEPS_ANNOTATION), problem)
