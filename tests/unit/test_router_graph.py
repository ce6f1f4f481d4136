"""The router's graph reading, KServe's condition syntax and the step adapters (no services)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from kubemind.backend import Tensor
from kubemind_transformers.router.adapters import adapter_context, step_prompt, step_tensors
from kubemind_transformers.router.conditions import MISSING, exists, get
from kubemind_transformers.router.graph import GraphError, load_graphs, parse_graph
from kubemind_transformers.router.messages import Message, bytes_tensor

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "inferenceservices" / "base" / "cv-to-llm" / "inferencegraph.yaml"

PEOPLE = {
    "name": {"first": "Tom", "last": "Anderson"},
    "age": 37,
    "children": ["Sara", "Alex", "Jack"],
    "friends": [
        {"first": "Dale", "last": "Murphy", "age": 44, "nets": ["ig", "fb", "tw"]},
        {"first": "Roger", "last": "Craig", "age": 68, "nets": ["fb", "tw"]},
        {"first": "Jane", "last": "Murphy", "age": 47, "nets": ["ig", "tw"]},
    ],
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("name.last", "Anderson"),
        ("age", 37),
        ("children.#", 3),
        ("children.1", "Alex"),
        ("child*.2", "Jack"),
        ("c?ildren.0", "Sara"),
        ("friends.#.first", ["Dale", "Roger", "Jane"]),
        ("friends.1.last", "Craig"),
        ('friends.#(last=="Murphy").first', "Dale"),
        ('friends.#(last=="Murphy")#.first', ["Dale", "Jane"]),
        ("friends.#(age>45)#.last", ["Craig", "Murphy"]),
        ("friends.#(first%\"D*\").last", "Murphy"),
        ("friends.#(first!%\"D*\").last", "Craig"),
        ('friends.#(nets.#(=="fb"))#.first', ["Dale", "Roger"]),
        ("[@this].#(age==37).name.first", "Tom"),
        ("name.middle", MISSING),
        ('friends.#(last=="Smith")', MISSING),
    ],
)
def test_gjson_paths_as_gjson_documents_them(path: str, expected: Any) -> None:
    assert get(PEOPLE, path) == expected


def test_kserve_switch_sample_conditions() -> None:
    """The three conditions of KServe's docs/samples/graph/switch.yaml, on its requests."""
    assert exists({"source": "client"}, "[@this].#(source==client)")
    assert not exists({"source": "server"}, "[@this].#(source==client)")
    assert exists({"instances": [{"intval": 11}]}, "instances.#(intval>10)")
    assert not exists({"instances": [{"intval": 9}]}, "instances.#(intval>10)")
    assert exists({"instances": [{"strval": "a-red-server-1"}]}, "instances.#(strval%*red-server*)")


def test_conditions_read_a_messages_v2_view_without_copying_tensor_data() -> None:
    request = Message([bytes_tensor("text_input", [b"what is it?"]), bytes_tensor("image", [b"\xff\xd8\xff..."])], "inputs")
    view = request.view()
    assert exists(view, 'inputs.#(name=="image")')
    assert get(view, 'inputs.#(name=="text_input").data.0') == "what is it?"
    assert not exists(Message([bytes_tensor("text_input", [b"hi"])], "inputs").view(), 'inputs.#(name=="image")')


def _demo() -> dict[str, Any]:
    return dict(yaml.safe_load(DEMO.read_text()))


def test_the_shipped_demo_graph_loads() -> None:
    (graph,) = load_graphs(DEMO)
    assert graph.name == "cv-to-llm"
    assert graph.root.router_type == "Switch"
    assert [s.name for s in graph.nodes["describe-image"].steps] == ["classify", "describe"]
    assert graph.nodes["describe-image"].steps[1].options.protocol == "openai-chat"


def _with(change: Any) -> dict[str, Any]:
    graph = copy.deepcopy(_demo())
    change(graph["spec"]["nodes"], graph)
    return graph


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda n, g: n["describe-image"]["steps"].append({"name": "again", "nodeName": "root"}),
         "cycle root.steps[0] 'with-image' -> node 'describe-image' -> describe-image.steps[2] 'again' -> node 'root'"),
        (lambda n, g: n["root"]["steps"][0].update(nodeName="describe-imag"),
         "unknown node 'describe-imag' at root.steps[0] 'with-image' -> node 'describe-imag'"),
        (lambda n, g: n.pop("root"), "must hold a 'root' node"),
        (lambda n, g: n["root"].update(routerType="Splitter"), "weights that add up to 100"),
        (lambda n, g: n["root"]["steps"][1].pop("condition"), "needs a condition"),
        (lambda n, g: n["root"]["steps"][1].update(condition="inputs|@reverse"), "pipes"),
        (lambda n, g: n["root"]["steps"][1].update(nodeName="describe-image"), "exactly one of nodeName"),
        (lambda n, g: g["metadata"]["annotations"].update({"kubemind.io/router-steps": "ghost: {}"}),
         "unknown service step(s) ghost"),
        (lambda n, g: g["metadata"]["annotations"].update({"kubemind.io/router-steps": "describe: {protocol: openai-chat, prompt: '{labels}'}"}),
         "field(s) labels have no entry in values"),
    ],
    ids=["cycle", "unknown-node", "no-root", "splitter-weights", "switch-condition", "unsupported-syntax",
         "two-targets", "unknown-step-options", "template-field"],
)
def test_a_graph_that_cannot_run_is_refused_naming_the_path(change: Any, message: str) -> None:
    with pytest.raises(GraphError) as refused:
        parse_graph(_with(change))
    assert message in refused.value.message
    assert "InferenceGraph 'cv-to-llm'" in refused.value.message


def test_the_adapter_turns_top_k_labels_into_the_prompt() -> None:
    (graph,) = load_graphs(DEMO)
    describe = graph.nodes["describe-image"].steps[1]
    request = Message([bytes_tensor("text_input", [b"Describe it."]), bytes_tensor("image", [b"jpeg"])], "inputs")
    labels = np.array([[b"espresso", b"cup", b"eggnog"]], dtype=np.object_)
    replies = {"classify": Message([Tensor("labels", "BYTES", labels)], "outputs")}
    context = adapter_context(request, request, replies)
    assert step_prompt(describe, request, context) == (
        "An image classifier's top labels for the user's photo are: espresso, cup, eggnog. Describe it."
    )
    classify = graph.nodes["describe-image"].steps[0]
    (image,) = step_tensors(classify, request, context)
    assert image.name == "image" and image.array[0] == b"jpeg"


def test_a_splitter_picks_steps_by_their_weights() -> None:
    from kubemind_transformers.router.executor import GraphExecutor
    from kubemind_transformers.router.settings import RouterSettings
    from kubemind_transformers.router.steps import ServiceClients

    graph = parse_graph({
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "canary"},
        "spec": {"nodes": {"root": {"routerType": "Splitter", "steps": [
            {"name": "stable", "serviceName": "a", "weight": 80},
            {"name": "canary", "serviceName": "b", "weight": 20},
        ]}}},
    })  # fmt: skip
    executor = GraphExecutor(graph, RouterSettings(splitter_seed=7), ServiceClients(0))
    picks = [executor._split(graph.root).name for _ in range(2000)]
    assert 0.17 < picks.count("canary") / len(picks) < 0.23


def test_a_steps_address_comes_from_service_hosts_then_its_url_then_the_cluster_name() -> None:
    from kubemind_transformers.router.executor import GraphExecutor
    from kubemind_transformers.router.settings import RouterSettings
    from kubemind_transformers.router.steps import ServiceClients

    graph = parse_graph({
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "g", "namespace": "ml", "annotations": {"kubemind.io/router-steps": "b: {protocol: openai-chat}"}},
        "spec": {"nodes": {"root": {"routerType": "Sequence", "steps": [
            {"name": "a", "serviceName": "cls"},
            {"name": "b", "serviceUrl": "http://llm.ml.svc:8080/openai/v1/chat/completions"},
            {"name": "c", "serviceUrl": "http://other:9000/v2/models/m/infer"},
        ]}}},
    })  # fmt: skip
    executor = GraphExecutor(graph, RouterSettings(service_hosts=["other=127.0.0.1:81"]), ServiceClients(0))
    a, b, c = graph.root.steps
    assert executor.address(a) == "cls.ml.svc.cluster.local:80"
    assert executor.address(b) == "http://llm.ml.svc:8080"
    assert executor.address(c) == "127.0.0.1:81"


def test_tensor_steps_take_inputs_over_grpc_or_rest_and_llm_steps_do_not() -> None:
    from kubemind_transformers.router.graph import GraphError, _options

    assert _options({"protocol": "v2", "inputs": {"image": "request.inputs.0"}}, "s").protocol == "v2"
    with pytest.raises(GraphError, match="only LLM steps"):
        _options({"protocol": "v2", "prompt": "x"}, "s")
    with pytest.raises(GraphError, match="only tensor steps"):
        _options({"protocol": "generate", "inputs": {"x": "request.inputs.0"}}, "s")
    with pytest.raises(GraphError, match="is not one of grpc-v2, v2, openai-chat, generate"):
        _options({"protocol": "rest"}, "s")
