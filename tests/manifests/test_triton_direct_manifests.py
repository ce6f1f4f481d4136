"""components/triton-direct: prod with the component passes `kubemind validate`, and renders the
routing docs/hot-path.md describes: the classifier's transformer calls Triton's own runtime over
gRPC, and only the OpenAI embeddings route goes through kubemind's Triton predictor."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubemind.cli import main
from kubemind.manifests import rendering
from tests.manifests.conftest import REPO

COMPONENT = "../../components/triton-direct"


def _prod_with_triton_direct(tmp_path: Path) -> Path:
    """A copy of inferenceservices whose prod overlay also includes the component (after grpc)."""
    root = tmp_path / "inferenceservices"
    shutil.copytree(REPO / "inferenceservices", root)
    overlay = root / "overlays" / "prod"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    components = kustomization["components"]
    components.insert(components.index("../../components/grpc") + 1, COMPONENT)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return overlay


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _prod_with_triton_direct(tmp_path_factory.mktemp("triton-direct"))


@pytest.fixture(scope="module")
def objects(overlay: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (o["kind"], o["metadata"]["name"]): o
        for o in yaml.safe_load_all(rendering.render(overlay))
        if o
    }


def test_prod_with_the_component_validates(
    overlay: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["validate", str(overlay), "--allow-refs", str(REPO / "external-objects.yaml")])
    out = capsys.readouterr().out
    assert code == 0, out


def test_the_classifier_transformer_calls_tritons_own_runtime_over_grpc(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    classifier = objects[("InferenceService", "cv-classifier")]
    model = classifier["spec"]["predictor"]["model"]
    runtime = objects[("ClusterServingRuntime", model["runtime"])]
    (container,) = runtime["spec"]["containers"]
    args = classifier["spec"]["transformer"]["containers"][0]["args"]

    assert container["image"].startswith("nvcr.io/nvidia/tritonserver:")
    assert container["args"][0] == "tritonserver"
    assert model["modelFormat"] == {"name": "triton", "version": "2"}
    assert model["protocolVersion"] == "grpc-v2"
    assert container["ports"] == [{"containerPort": 9000, "name": "h2c", "protocol": "TCP"}]
    assert "--grpc-port=9000" in container["args"]
    assert "--predictor_protocol=grpc-v2" in args
    assert "--predictor_host=cv-classifier-predictor.kubemind.svc.cluster.local" in args
    # Triton knows the model by its repository folder, not by the InferenceService's name.
    assert args[-1] == "--predictor_model_name=efficientnet_lite0"


def test_only_the_openai_embeddings_route_goes_through_the_adapter(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    embedder = objects[("InferenceService", "embedder")]
    adapter = objects[("InferenceService", "embedder-openai")]
    (container,) = adapter["spec"]["predictor"]["containers"]
    routes = {r["name"]: r for r in objects[("VirtualService", "embedder")]["spec"]["http"]}

    assert embedder["spec"]["predictor"]["model"]["runtime"] == "kubemind-tritonserver"
    assert container["image"].startswith("registry.kubemind.dev/kubemind/predictor-triton:")
    assert "--launch_triton=false" in container["args"]
    assert "--triton_host=embedder-predictor.kubemind.svc.cluster.local" in container["args"]
    assert routes["openai-embeddings"]["match"] == [{"uri": {"prefix": "/openai/v1/embeddings"}}]
    assert (
        routes["openai-embeddings"]["rewrite"]["authority"]
        == "embedder-openai.kubemind.svc.cluster.local"
    )
    assert "match" not in routes["v2"], "everything else goes to Triton"
    assert routes["v2"]["rewrite"]["authority"] == "embedder.kubemind.svc.cluster.local"


def test_without_the_component_prod_keeps_the_adapter_in_front_of_triton() -> None:
    rendered = yaml.safe_load_all(
        (REPO / "inferenceservices" / "rendered" / "prod.yaml").read_text()
    )
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in rendered if o}
    assert (
        by_name[("InferenceService", "cv-classifier")]["spec"]["predictor"]["model"]["runtime"]
        == "kubemind-triton"
    )
    assert ("InferenceService", "embedder-openai") not in by_name
