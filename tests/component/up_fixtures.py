"""`kubemind up` as a real child process on a small overlay written by the test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kubemind.manifests.istio_routes import KNATIVE_LOCAL_GATEWAY
from kubemind.processes import die_with_parent

STATE_TIMEOUT = 90.0
KUBECTL = "kubectl"


def write_overlay(
    folder: Path,
    *,
    versions: str = "1",
    min_replicas: int = 2,
    canary: int | None = None,
    extra_args: tuple[str, ...] = (),
    storage_uri: str | None = None,
) -> Path:
    """A kustomize overlay with one InferenceService `simple` on kubemind's reference predictor.
    `versions` tells revisions apart: the v2 version a response names is the highest declared."""
    return write_services_overlay(folder, simple_service(
        versions=versions, min_replicas=min_replicas, canary=canary, extra_args=extra_args, storage_uri=storage_uri))


def virtual_service(name: str, host: str, service: str = "simple", mirror: str | None = None,
                    mirror_percent: float | None = None) -> dict[str, Any]:
    """A VirtualService as istio/base writes them (through Knative's local gateway) from `host`
    to InferenceService `service` in namespace kubemind, optionally mirrored to `mirror`."""
    http: dict[str, Any] = {
        "match": [{"uri": {"prefix": "/"}}],
        "rewrite": {"authority": f"{service}.kubemind.svc.cluster.local"},
        "route": [{"destination": {"host": KNATIVE_LOCAL_GATEWAY, "port": {"number": 80}}}],
    }
    if mirror is not None:
        http["mirror"] = {"host": f"{mirror}.kubemind.svc.cluster.local", "port": {"number": 80}}
        if mirror_percent is not None:
            http["mirrorPercentage"] = {"value": mirror_percent}
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "kubemind"},
        "spec": {"hosts": [host], "http": [http]},
    }


def write_services_overlay(folder: Path, *services: dict[str, Any]) -> Path:
    """A kustomize overlay of these InferenceServices (one NAME.yaml each) in namespace kubemind."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [service["metadata"]["name"] for service in services]
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["namespace.yaml", *(f"{name}.yaml" for name in names)],
        "images": [{"name": "kubemind/core", "newName": "registry.kubemind.dev/kubemind/core", "newTag": "0.1.0"}],
    }))
    (folder / "namespace.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubemind"}}))
    for name, service in zip(names, services, strict=True):
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(service))
    return folder


def simple_service(
    name: str = "simple",
    *,
    versions: str = "1",
    min_replicas: int = 2,
    canary: int | None = None,
    extra_args: tuple[str, ...] = (),
    storage_uri: str | None = None,
    image: str = "kubemind/core",
    model_name: str | None = None,
) -> dict[str, Any]:
    """An InferenceService on kubemind's reference predictor (the overlay's `images:` tags its image),
    serving the model `model_name` (default: the service's name)."""
    predictor: dict[str, Any] = {
        "minReplicas": min_replicas,
        "containers": [{
            "name": "kserve-container",
            "image": image,
            "args": ["kubemind_predictors.simple", f"--model_name={model_name or name}", f"--versions={versions}",
                     "--http_port=8080", *extra_args],
        }],
    }
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    if storage_uri:
        predictor["storageUri"] = storage_uri
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "kubemind"},
        "spec": {"predictor": predictor},
    }


REPO = Path(__file__).resolve().parents[2]
# Every image the repository's runtimes name, tagged as the overlays tag them (kubemind validate).
RUNTIME_IMAGES = [
    {"name": f"kubemind/{name}", "newName": f"registry.kubemind.dev/kubemind/{new}", "newTag": "0.1.0"}
    for name, new in (("predictor-onnx", "predictor-onnx"), ("predictor-pyfunc", "predictor-pyfunc"),
                      ("predictor-triton", "predictor-triton"), ("predictor-vllm", "predictor-vllm-cpu"),
                      ("storage-initializer", "storage-initializer"))
] + [{"name": "nvcr.io/nvidia/tritonserver", "newTag": "25.10-py3"}]


def write_runtimes_overlay(folder: Path, *services: dict[str, Any]) -> Path:
    """An overlay of the repository's own runtimes (inferenceservices/base/runtimes: its
    ClusterServingRuntimes and the registry's ClusterStorageContainer) and these
    InferenceServices (one NAME.yaml each) in namespace kubemind."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [service["metadata"]["name"] for service in services]
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize takes relative paths only.
        "resources": ["namespace.yaml", os.path.relpath(REPO / "inferenceservices" / "base" / "runtimes", folder),
                      *(f"{name}.yaml" for name in names)],
        "images": RUNTIME_IMAGES,
    }))
    (folder / "namespace.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubemind"}}))
    for name, service in zip(names, services, strict=True):
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(service))
    return folder


def write_registered_model_overlay(folder: Path, storage_uri: str) -> Path:
    """The repository's runtimes and one InferenceService `scorer` whose ONNX model comes from
    the registry (`models:/`), as the cluster's overlays name models."""
    return write_runtimes_overlay(folder, {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "scorer", "namespace": "kubemind"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "onnx"}, "runtime": "kubemind-onnx",
                                         "storageUri": storage_uri}}},
    })


def write_rate_limit(path: Path, tokens_per_second: int, max_tokens: int) -> Path:
    """istio/base/rate-limit.yaml's EnvoyFilter with another token bucket."""
    obj = yaml.safe_load((REPO / "istio" / "base" / "rate-limit.yaml").read_text())
    bucket = obj["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["value"]["token_bucket"]
    bucket.update(max_tokens=max_tokens, tokens_per_fill=tokens_per_second, fill_interval="1s")
    path.write_text(yaml.safe_dump(obj))
    return path


def cli(home: Path, *argv: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubemind.cli", *argv], capture_output=True, text=True,
                          env={**os.environ, "KUBEMIND_HOME": str(home)}, timeout=timeout, check=False)


class Up:
    """`python -m kubemind.cli up OVERLAY` with free gateway ports and its own KUBEMIND_HOME."""

    def __init__(self, overlay: Path, home: Path, *extra: str):
        self.home = home
        self.out = home / "up.out"
        home.mkdir(parents=True, exist_ok=True)
        with open(self.out, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kubemind.cli", "up", str(overlay), "--http_port", "0", "--grpc_port", "0",
                 "--watch_interval", "0.5", *extra],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "KUBEMIND_HOME": str(home)},
                preexec_fn=die_with_parent(),  # a killed test run leaves no `up` behind
            )

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def state(self) -> dict[str, Any]:
        try:
            return json.loads((self.home / "up" / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait_for(self, condition: Callable[[dict[str, Any]], bool], what: str,
                 timeout: float = STATE_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state and condition(state):
                return state
            if self.process.poll() is not None:
                raise AssertionError(f"kubemind up exited {self.process.returncode}:\n{self.text()}")
            time.sleep(0.2)
        raise AssertionError(f"not {what} after {timeout}s:\n{self.text()}\n{json.dumps(self.state(), indent=1)}")

    def wait_ready(self) -> dict[str, Any]:
        return self.wait_for(lambda s: s["ready"], "ready")

    @property
    def base_url(self) -> str:
        """The gateway's path route to the service, as tritonclient.http takes it (host:port/path)."""
        return f"127.0.0.1:{self.state()['gateway']['http_port']}/serving/kubemind/simple"

    # -- its Kubernetes API ------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        """The kubeconfig `up` wrote for its Kubernetes API ($KUBEMIND_HOME/up/kubeconfig)."""
        return Path(self.state()["api"]["kubeconfig"])

    @property
    def api_url(self) -> str:
        """http://127.0.0.1:PORT of the Kubernetes API."""
        return str(self.state()["api"]["url"])

    def kube_client(self) -> Any:
        """A `kubernetes.client.ApiClient` for the API, from the kubeconfig as a user would load it;
        wrap it in `kubernetes.client.CustomObjectsApi`."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def kubectl(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """The real kubectl against the API (its discovery cache in this `up`'s home)."""
        return subprocess.run([KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir",
                               str(self.home / "kubectl-cache"), *argv],
                              capture_output=True, text=True, timeout=timeout, check=False)

    def stop(self) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        return self.process.wait(60)


def revisions(state: dict[str, Any]) -> list[dict[str, Any]]:
    return state["services"][0]["components"][0]["revisions"]


def process_pids(state: dict[str, Any]) -> list[int]:
    return [pid for revision in revisions(state) for pid in revision["pids"]]
