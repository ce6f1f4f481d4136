"""An InferenceGraph (`serving.kserve.io/v1alpha1`) read into a checked, immutable plan.

The object is the one that goes to the cluster. What KServe's schema has no field for — which
protocol a step speaks, the model name at the service, a step's deadline, and the adapter that
turns one step's reply into the next step's request — lives in one annotation,
`kubemind.io/router-steps` (YAML keyed by step name), so the graph still validates against
KServe's CRD. Everything is checked here, once, at start: a graph with a cycle, an unknown node,
a Splitter whose weights do not add up to 100 or a condition this router cannot evaluate is
refused with the path to the problem, never discovered by a request.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from kubemind.errors import InvalidSettings
from kubemind.manifests.graph_routes import ROOT, STEPS_ANNOTATION, route_problems
from kubemind_transformers.router.conditions import ConditionSyntaxError, check_syntax

API_VERSION = "serving.kserve.io/v1alpha1"
KIND = "InferenceGraph"
ROUTER_TYPES = ("Sequence", "Switch", "Ensemble", "Splitter")
PROTOCOLS = ("grpc-v2", "v2", "openai-chat", "generate")
"""grpc-v2: ModelInfer with the core OIP client; openai-chat: /openai/v1/chat/completions;
generate: the OIP generate extension (/v2/models/{model}/generate[_stream])."""

RouterType = Literal["Sequence", "Switch", "Ensemble", "Splitter"]
Protocol = Literal["grpc-v2", "v2", "openai-chat", "generate"]
# Steps that take and return v2 tensors: over gRPC, or over REST (v2 with the binary tensor
# extension) where only an HTTP/1.1 port reaches the service (a Knative http1 port).
TENSOR_PROTOCOLS = ("grpc-v2", "v2")


class GraphError(InvalidSettings):
    """The graph cannot be executed; the message names the graph and the path to the problem."""


@dataclass(frozen=True)
class StepOptions:
    """kubemind's part of a step, from the `kubemind.io/router-steps` annotation."""

    protocol: Protocol = "grpc-v2"
    model: str = ""
    """Model name at the service; default: the service name."""
    timeout_seconds: float | None = None
    inputs: Mapping[str, str] = field(default_factory=dict)
    """grpc-v2: the step's tensor name -> a path (in the adapter context) to a v2 tensor."""
    prompt: str | None = None
    """LLM steps: a str.format template; its fields come from `values`."""
    values: Mapping[str, str] = field(default_factory=dict)
    """Template field -> path in the adapter context; arrays are joined with ', '."""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    """LLM steps: sampling parameters sent with every call (max_tokens, temperature...)."""


@dataclass(frozen=True)
class Step:
    name: str
    where: str
    """The step's place in the graph, for messages: `root.steps[1] 'describe'`."""
    node_name: str = ""
    service: str = ""
    service_url: str = ""
    data: str = "$request"
    condition: str = ""
    dependency: Literal["Soft", "Hard"] = "Soft"
    weight: int | None = None
    options: StepOptions = field(default_factory=StepOptions)

    @property
    def label(self) -> str:
        target = f"node '{self.node_name}'" if self.node_name else f"service '{self.service}'"
        return f"step '{self.name}' ({target})"


@dataclass(frozen=True)
class Node:
    name: str
    router_type: RouterType
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Graph:
    name: str
    namespace: str
    nodes: Mapping[str, Node]
    timeout_seconds: float | None
    """spec.timeout: the whole graph's deadline (None: the server's request deadline)."""
    step_timeout_seconds: float | None
    """spec.routerTimeouts.serviceClient: a step's deadline unless its options set one."""

    @property
    def root(self) -> Node:
        return self.nodes[ROOT]

    def service_steps(self) -> list[Step]:
        return [step for node in self.nodes.values() for step in node.steps if not step.node_name]


def load_graphs(path: Path) -> list[Graph]:
    """Every InferenceGraph in a YAML file (other kinds in a multi-document file are skipped)."""
    try:
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    except (OSError, yaml.YAMLError) as exc:
        raise GraphError(f"{path}: cannot read the graph: {exc}") from None
    graphs = [parse_graph(doc, str(path)) for doc in documents if isinstance(doc, dict) and doc.get("kind") == KIND]
    if not graphs:
        raise GraphError(f"{path}: holds no {KIND}")
    return graphs


def parse_graph(obj: Mapping[str, Any], source: str = "graph") -> Graph:
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != KIND:
        raise GraphError(f"{source}: not a {API_VERSION} {KIND}")
    metadata = obj.get("metadata") or {}
    name = str(metadata.get("name") or "")
    if not name:
        raise GraphError(f"{source}: metadata.name is required")
    where = f"InferenceGraph '{name}'"
    spec = obj.get("spec") or {}
    raw_nodes = spec.get("nodes") or {}
    if not isinstance(raw_nodes, Mapping) or ROOT not in raw_nodes:
        raise GraphError(f"{where}: spec.nodes must hold a '{ROOT}' node (KServe starts there)")
    options = _step_options(metadata.get("annotations") or {}, where)
    problems = route_problems(raw_nodes)
    if problems:  # before the nodes are read: a cycle is the first thing to say
        raise GraphError(f"{where}: {problems[0][1]}")
    nodes = {str(n): _node(str(n), raw, options, where) for n, raw in raw_nodes.items()}
    graph = Graph(
        name=name,
        namespace=str(metadata.get("namespace") or "default"),
        nodes=nodes,
        timeout_seconds=_positive(spec.get("timeout"), f"{where}: spec.timeout"),
        step_timeout_seconds=_positive((spec.get("routerTimeouts") or {}).get("serviceClient"), f"{where}: spec.routerTimeouts.serviceClient"),
    )
    _check_options_name_steps(options, {step.name for step in graph.service_steps()}, where)
    return graph


def _check_options_name_steps(options: Mapping[str, StepOptions], named: set[str], where: str) -> None:
    unknown = sorted(set(options) - named)
    if unknown:
        raise GraphError(f"{where}: {STEPS_ANNOTATION} names unknown service step(s) {', '.join(unknown)} (steps: {', '.join(sorted(named))})")


def steps_annotation_problem(obj: Mapping[str, Any]) -> str | None:
    """What is wrong with a graph's `kubemind.io/router-steps` annotation, or None.

    `kubemind validate` calls this (by import path, as it imports settings classes), so a graph
    the router would refuse at start is refused before it reaches a cluster, with the same words.
    Only the annotation is judged here: the rest of the graph is the validator's own business.
    """
    metadata = obj.get("metadata") or {}
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if not isinstance(annotations, Mapping) or STEPS_ANNOTATION not in annotations:
        return None
    where = f"InferenceGraph '{metadata.get('name') or ''}'"
    spec = obj.get("spec")
    nodes = spec.get("nodes") if isinstance(spec, Mapping) else None
    service_steps = {
        str(step.get("name") or f"{node}-{index}")
        for node, body in (nodes.items() if isinstance(nodes, Mapping) else ())
        if isinstance(body, Mapping) and isinstance(body.get("steps"), list)
        for index, step in enumerate(body["steps"])
        if isinstance(step, Mapping) and not step.get("nodeName")
    }
    try:
        _check_options_name_steps(_step_options(annotations, where), service_steps, where)
    except GraphError as exc:
        return exc.message
    return None


def _positive(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or value <= 0:
        raise GraphError(f"{what}: must be a positive number of seconds, got {value!r}")
    return float(value)


def _node(name: str, raw: Any, options: Mapping[str, StepOptions], where: str) -> Node:
    at = f"{where}: nodes.{name}"
    if not isinstance(raw, Mapping):
        raise GraphError(f"{at}: must be an object with routerType and steps")
    router_type = raw.get("routerType")
    if router_type not in ROUTER_TYPES:
        raise GraphError(f"{at}.routerType: {router_type!r} is not one of {', '.join(ROUTER_TYPES)}")
    raw_steps = raw.get("steps") or []
    if not raw_steps:
        raise GraphError(f"{at}.steps: a node needs at least one step")
    steps = tuple(_step(name, index, raw_step, options, at) for index, raw_step in enumerate(raw_steps))
    names = [step.name for step in steps]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise GraphError(f"{at}.steps: step name(s) {', '.join(duplicates)} used twice")
    if router_type == "Splitter":
        weights = [step.weight for step in steps]
        if any(w is None or w < 0 for w in weights) or sum(w or 0 for w in weights) != 100:
            raise GraphError(f"{at}: a Splitter's steps need weights that add up to 100, got {weights}")
    if router_type == "Switch":
        missing = [step.where for step in steps if not step.condition]
        if missing:
            raise GraphError(f"{at}: every step of a Switch needs a condition ({', '.join(missing)} has none)")
    return Node(name, router_type, steps)


def _step(node: str, index: int, raw: Any, options: Mapping[str, StepOptions], at: str) -> Step:
    if not isinstance(raw, Mapping):
        raise GraphError(f"{at}.steps[{index}]: must be an object")
    name = str(raw.get("name") or f"{node}-{index}")
    where = f"{node}.steps[{index}] '{name}'"
    node_name = str(raw.get("nodeName") or "")
    service = str(raw.get("serviceName") or "")
    service_url = str(raw.get("serviceUrl") or "")
    if sum(bool(x) for x in (node_name, service or service_url)) != 1:
        raise GraphError(f"{at}.steps[{index}] '{name}': give exactly one of nodeName or serviceName/serviceUrl")
    if service_url and not service:
        service = urlsplit(service_url).hostname or service_url
    data = str(raw.get("data") or "$request")
    if data not in ("$request", "$response"):
        raise GraphError(f"{at}.steps[{index}] '{name}': data must be $request or $response, got {data!r}")
    condition = str(raw.get("condition") or "")
    if condition:
        try:
            check_syntax(condition)
        except ConditionSyntaxError as exc:
            raise GraphError(f"{at}.steps[{index}] '{name}': {exc.message}") from None
    weight = raw.get("weight")
    return Step(
        name=name,
        where=where,
        node_name=node_name,
        service=service,
        service_url=service_url,
        data=data,
        condition=condition,
        dependency="Hard" if raw.get("dependency") == "Hard" else "Soft",
        weight=int(weight) if weight is not None else None,
        options=options.get(name, StepOptions()) if not node_name else StepOptions(),
    )


def _step_options(annotations: Mapping[str, Any], where: str) -> dict[str, StepOptions]:
    raw = annotations.get(STEPS_ANNOTATION)
    if raw is None:
        return {}
    at = f"{where}: annotation {STEPS_ANNOTATION}"
    try:
        parsed = yaml.safe_load(str(raw)) or {}
    except yaml.YAMLError as exc:
        raise GraphError(f"{at}: not YAML ({exc})") from None
    if not isinstance(parsed, Mapping):
        raise GraphError(f"{at}: must map step names to their options")
    return {str(name): _options(value or {}, f"{at}: {name}") for name, value in parsed.items()}


_OPTION_KEYS = {"protocol", "model", "timeoutSeconds", "inputs", "prompt", "values", "parameters"}


def _options(raw: Any, at: str) -> StepOptions:
    if not isinstance(raw, Mapping):
        raise GraphError(f"{at}: must be an object")
    unknown = sorted(set(raw) - _OPTION_KEYS)
    if unknown:
        raise GraphError(f"{at}: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(_OPTION_KEYS))})")
    protocol = raw.get("protocol", "grpc-v2")
    if protocol not in PROTOCOLS:
        raise GraphError(f"{at}.protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    inputs = {str(k): str(v) for k, v in (raw.get("inputs") or {}).items()}
    values = {str(k): str(v) for k, v in (raw.get("values") or {}).items()}
    for key, path in {**inputs, **values}.items():
        try:
            check_syntax(path)
        except ConditionSyntaxError as exc:
            raise GraphError(f"{at}.{key}: {exc.message}") from None
    prompt = raw.get("prompt")
    if prompt is not None:
        if protocol in TENSOR_PROTOCOLS:
            raise GraphError(f"{at}.prompt: only LLM steps (openai-chat, generate) take a prompt")
        fields = {f for _, f, _, _ in string.Formatter().parse(str(prompt)) if f is not None}
        undefined = sorted(fields - set(values))
        if undefined:
            raise GraphError(f"{at}.prompt: field(s) {', '.join(undefined)} have no entry in values")
    if inputs and protocol not in TENSOR_PROTOCOLS:
        raise GraphError(f"{at}.inputs: only tensor steps (grpc-v2, v2) take tensor inputs; LLM steps take prompt and values")
    return StepOptions(
        protocol=protocol,
        model=str(raw.get("model") or ""),
        timeout_seconds=_positive(raw.get("timeoutSeconds"), f"{at}.timeoutSeconds"),
        inputs=inputs,
        prompt=str(prompt) if prompt is not None else None,
        values=values,
        parameters=dict(raw.get("parameters") or {}),
    )


__all__ = ["Graph", "GraphError", "Node", "Step", "StepOptions", "load_graphs", "parse_graph", "steps_annotation_problem"]
