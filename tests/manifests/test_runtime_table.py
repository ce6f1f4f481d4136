"""The flavor -> runtime table (kubemind/runtimes.py) and the cluster's ServingRuntimes agree: a
registered flavor is served on a cluster by the same module `kubemind serve --model` runs."""

from __future__ import annotations

import re

import pytest
import yaml

from kubemind.runtimes import RUNTIMES, Runtime
from tests.manifests.conftest import REPO

RUNTIME_DIR = REPO / "inferenceservices" / "base" / "runtimes"


def serving_runtimes() -> dict[str, dict]:
    found = {}
    for path in RUNTIME_DIR.glob("*.yaml"):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and obj.get("kind") in ("ClusterServingRuntime", "ServingRuntime"):
                found[obj["metadata"]["name"]] = obj
    return found


def image_entry_modules(image: str) -> set[str]:
    """The `python -m` modules of the images/ folders that build `image` (vLLM has two)."""
    name = image.split("/")[-1]
    modules = set()
    for containerfile in (REPO / "images").glob(f"{name}*/Containerfile"):
        match = re.search(r'^ENTRYPOINT \[.*"-m", "([\w.]+)"\]', containerfile.read_text(), re.M)
        if match:
            modules.add(match[1])
    return modules


@pytest.mark.parametrize("runtime", RUNTIMES.values(), ids=list(RUNTIMES))
def test_each_flavor_has_a_cluster_runtime_running_the_same_module(runtime: Runtime) -> None:
    runtimes = serving_runtimes()
    assert runtime.serving_runtime in runtimes, f"no ServingRuntime {runtime.serving_runtime} in {RUNTIME_DIR}"
    spec = runtimes[runtime.serving_runtime]["spec"]
    assert runtime.model_format in [f["name"] for f in spec["supportedModelFormats"]]
    (container,) = spec["containers"]
    assert image_entry_modules(container["image"]) == {runtime.module}
    # The flags every container of the runtime gets, in KServe's --flag=value form.
    args = runtime.args("{{.Name}}", "/mnt/models")
    expected = [f"{flag}={value}" for flag, value in zip(args[::2], args[1::2], strict=True)]
    assert set(expected) <= set(container["args"])
