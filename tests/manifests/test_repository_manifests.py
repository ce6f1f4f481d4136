"""The repository's own overlays: they validate, and the committed rendered output is current."""

from __future__ import annotations

import pytest
import yaml

from kubemind.manifests import rendering
from kubemind.manifests.references import load_allow_list
from kubemind.manifests.sizing import size_model
from kubemind.manifests.validator import validate_paths
from tests.manifests.conftest import ENVIRONMENTS, LOCAL_OVERLAYS, REPO, TREES

OVERLAYS = [(tree, env) for tree in TREES for env in (*ENVIRONMENTS, *LOCAL_OVERLAYS.get(tree, ()))]


@pytest.mark.parametrize(("tree", "env"), OVERLAYS, ids=[f"{t}-{e}" for t, e in OVERLAYS])
def test_overlay_validates(crd_dir, tree, env):
    allowed = load_allow_list(REPO / "external-objects.yaml")
    result = validate_paths([REPO / tree / "overlays" / env], crd_dir, allowed_refs=allowed)
    assert result.objects, "the overlay rendered no objects"
    assert result.problems == []


@pytest.mark.parametrize(("tree", "env"), OVERLAYS, ids=[f"{t}-{e}" for t, e in OVERLAYS])
def test_committed_rendering_is_current(tree, env):
    committed = REPO / tree / "rendered" / f"{env}.yaml"
    fresh = rendering.render(REPO / tree / "overlays" / env)
    assert committed.read_text() == fresh, (
        f"{committed.relative_to(REPO)} is stale: run "
        f"`kubectl kustomize {tree}/overlays/{env} > {tree}/rendered/{env}.yaml` and commit it"
    )


def test_validate_discovers_every_overlay_of_a_tree():
    roots = rendering.kustomize_roots(REPO / "inferenceservices")
    # The release controller is applied on its own (docs/release.md), so it is a root of its own.
    standalone = ("rollout-controller",)
    assert sorted(root.name for root in roots) == sorted((*ENVIRONMENTS, *LOCAL_OVERLAYS["inferenceservices"], *standalone))


@pytest.mark.parametrize("env", (*ENVIRONMENTS, *LOCAL_OVERLAYS["inferenceservices"]))
def test_llm_memory_matches_kubemind_size(env):
    """The LLM's memory follows from its size, so pods are not OOMKilled mid-load."""
    objects = yaml.safe_load_all(
        (REPO / "inferenceservices" / "rendered" / f"{env}.yaml").read_text()
    )
    llm = next(
        o
        for o in objects
        if o["kind"] == "InferenceService" and o["metadata"]["name"] == "llm-chat"
    )
    model = llm["spec"]["predictor"]["model"]
    kv_flags = [
        a.split("=", 1)[1] for a in model.get("args", []) if a.startswith("--kv_cache_space=")
    ]
    kv_cache = float(kv_flags[-1]) if kv_flags else 4.0  # VLLMSettings.kv_cache_space default
    expected = size_model(
        float(llm["metadata"]["annotations"]["kubemind.io/model-parameters"]), kv_cache=kv_cache
    )
    assert model["resources"]["requests"]["memory"] == f"{expected.request_gib}Gi"
    assert model["resources"]["limits"]["memory"] == f"{expected.limit_gib}Gi"


def test_prod_puts_the_llm_on_the_gpu_pool_with_a_warm_replica_and_a_canary():
    objects = yaml.safe_load_all(
        (REPO / "inferenceservices" / "rendered" / "prod.yaml").read_text()
    )
    llm = next(
        o
        for o in objects
        if o["kind"] == "InferenceService" and o["metadata"]["name"] == "llm-chat"
    )
    predictor = llm["spec"]["predictor"]
    assert predictor["nodeSelector"] == {"kubemind.io/pool": "gpu"}
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert predictor["minReplicas"] >= 1
    assert 0 < predictor["canaryTrafficPercent"] < 100


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_image_transformers_call_their_predictor_over_grpc(env):
    """The image transformer implements only grpc-v2 to its predictor and refuses to start with
    v2; the last --predictor_protocol wins, as with any repeated flag."""
    objects = yaml.safe_load_all((REPO / "inferenceservices" / "rendered" / f"{env}.yaml").read_text())
    transformers = [
        o for o in objects
        if o["kind"] == "InferenceService"
        and any("transformer-image" in c["image"] for c in o["spec"].get("transformer", {}).get("containers", []))
    ]
    assert transformers, "no InferenceService with the image transformer"
    for isvc in transformers:
        (container,) = isvc["spec"]["transformer"]["containers"]
        protocols = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--predictor_protocol=")]
        assert protocols[-1:] == ["grpc-v2"], f"{isvc['metadata']['name']}: {container['args']}"
