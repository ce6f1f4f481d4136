"""A rollout rig: `kubemind up` of a service that names a RolloutPolicy (`simple` unless a test
writes another overlay), a real Prometheus scraping its replicas by revision (the targets file
`up` keeps), load through the
gateway counting failures, and the release controller on a thread, driving `up` through its
Kubernetes API."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from kubemind.audit import audit_log
from kubemind.audit.settings import AuditSettings
from kubemind.release.controller import Controller, RolloutState
from kubemind.release.errors import KubernetesApiError
from kubemind.release.kube import KubeApi
from kubemind.release.settings import ReleaseSettings
from tests.component.prometheus_fixtures import PrometheusServer
from tests.component.up_fixtures import Up, write_overlay

BODY = {"inputs": [{"name": n, "datatype": "INT32", "shape": [1, 16], "data": list(range(16))}
                   for n in ("INPUT0", "INPUT1")]}
POLICY = "fast"


def fast_policy(prometheus_url: str, **analysis: Any) -> dict[str, Any]:
    """Short intervals so a rollout takes seconds: 1 s analysis, steps 20 % then 50 %."""
    return {
        "apiVersion": "kubemind.io/v1alpha1", "kind": "RolloutPolicy",
        "metadata": {"name": POLICY, "namespace": "kubemind"},
        "spec": {
            "prometheus": {"url": prometheus_url},
            "canary": {"steps": [{"weight": 20, "pauseSeconds": 2}, {"weight": 50, "pauseSeconds": 2}]},
            "analysis": {"intervalSeconds": 1, "windowSeconds": 4, "minSamples": 5, "failureLimit": 2, **analysis},
            "gates": [{"name": "success", "metric": "successRate", "min": 0.99},
                      {"name": "p90", "metric": "latency", "quantile": 0.9, "max": 0.2}],
        },
    }


def write_rollout_overlay(folder: Path, prometheus_url: str) -> Path:
    write_overlay(folder, versions="1", min_replicas=1)
    return add_policy(folder, "simple", fast_policy(prometheus_url))


def add_policy(folder: Path, service: str, policy: dict[str, Any]) -> Path:
    """The overlay's InferenceService `service` names `policy`, which the overlay now holds."""
    body = yaml.safe_load((folder / f"{service}.yaml").read_text())
    body["metadata"]["annotations"] = {"kubemind.io/rollout-policy": POLICY}
    (folder / f"{service}.yaml").write_text(yaml.safe_dump(body))
    return add_resource(folder, "policy.yaml", policy)


def add_resource(folder: Path, file_name: str, body: dict[str, Any]) -> Path:
    """One more object in the overlay, in its own file."""
    (folder / file_name).write_text(yaml.safe_dump(body))
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    kustomization["resources"].append(file_name)
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return folder


class Load:
    """Requests through the gateway on a thread; every failure is kept."""

    def __init__(self, url: str, model: str = "simple", body: dict[str, Any] | None = None,
                 host: str | None = None):
        """`host`: the Host header (a VirtualService's host; `url` is then the gateway's root)."""
        self.url = f"{url}/v2/models/{model}/infer"
        self.body = body or BODY
        self.headers = {"host": host} if host else {}
        self.stop = threading.Event()
        self.done = 0
        self.errors: list[str] = []
        self.by_revision: dict[str, int] = {}
        self.stale_retries = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    answer = self._post_once_more_on_a_stale_connection(client)
                    revision = answer.headers.get("x-kubemind-revision", "?")
                    self.by_revision[revision] = self.by_revision.get(revision, 0) + 1
                    if answer.status_code != 200:
                        self.errors.append(f"{answer.status_code} from {revision}: {answer.text[:200]}")
                    self.done += 1
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                time.sleep(0.005)

    def _post_once_more_on_a_stale_connection(self, client: httpx.Client) -> httpx.Response:
        # As tests/component/test_up.py's Background: an nginx worker retired by a reload closes
        # its idle keep-alive connections, and a request sent on one at that instant sees the
        # connection closed before any byte of an answer. Pools retry that once.
        # Seen as a reset too (ECONNRESET) when the worker closes it while the request is sent.
        try:
            return client.post(self.url, json=self.body, headers=self.headers)
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            if "without sending a response" not in str(exc) and "Connection reset" not in str(exc):
                raise
            self.stale_retries += 1
            return client.post(self.url, json=self.body, headers=self.headers)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(60)


class ControllerThread:
    """The release controller's loop, as `python -m kubemind.release` runs it, on a thread."""

    def __init__(self, kubeconfig: Path, home: Path, prometheus_url: str, service: str = "simple"):
        self.settings = ReleaseSettings(kubeconfig=str(kubeconfig), namespace="kubemind",
                                        prometheus_url=prometheus_url, tick_seconds=0.2, registry_tags=False)
        self.audit = audit_log(AuditSettings(), home=home)
        self.controller = Controller(self.settings, KubeApi(str(kubeconfig)), self.audit)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.controller.run, args=(self.stop, [service]), daemon=True)
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.controller.close()


class Rig:
    def __init__(self, up: Up, prometheus: PrometheusServer, api: KubeApi, controller: ControllerThread,
                 service: str = "simple"):
        self.up, self.prometheus, self.api, self.controller = up, prometheus, api, controller
        self.service = service

    @property
    def gateway_root(self) -> str:
        return f"http://127.0.0.1:{self.up.state()['gateway']['http_port']}"

    @property
    def gateway(self) -> str:
        return f"{self.gateway_root}/serving/kubemind/{self.service}"


@contextmanager
def running_rig(
    work: Path,
    ready_timeout: float = 300.0,
    overlay: Callable[[Path, str], Path] = write_rollout_overlay,
    service: str = "simple",
) -> Iterator[Rig]:
    """Prometheus, `kubemind up` of the rollout overlay (`overlay(folder, prometheus_url)`
    writes it) and the controller thread for `service`, all stopped on the way out (the
    component tests and bench_rollout share it)."""
    home = work / "home"
    # Scraping the replicas `up` lists in its file_sd targets file, as `kubemind rollout rehearse`'s Prometheus does.
    prometheus = PrometheusServer(work / "prometheus", targets_file=home / "up" / "prometheus-targets.json")
    prometheus.start()
    up = Up(overlay(work / "overlay" / "local", prometheus.url), home)
    controller = None
    try:
        up.wait_for(lambda s: s["ready"], "ready", timeout=ready_timeout)  # a loaded 2-core machine
        controller = ControllerThread(up.kubeconfig, home, prometheus.url, service)
        yield Rig(up, prometheus, KubeApi(str(up.kubeconfig)), controller, service)
    finally:
        if controller is not None:
            controller.finish()
        up.stop()
        prometheus.stop()


def isvc(api: KubeApi, attempts: int = 5, name: str = "simple") -> dict[str, Any]:
    """The InferenceService; a failed read is retried (the controller itself holds on one)."""
    for attempt in range(attempts):
        try:
            return api.get_isvc("kubemind", name)
        except KubernetesApiError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def state_of(api: KubeApi, name: str = "simple") -> RolloutState | None:
    return RolloutState.from_annotations(isvc(api, name=name)["metadata"].get("annotations") or {})


def predictor_status(api: KubeApi, name: str = "simple") -> dict[str, Any]:
    return dict(((isvc(api, name=name).get("status") or {}).get("components") or {}).get("predictor") or {})


def wait_for_state(api: KubeApi, condition: Any, what: str, timeout: float = 180.0,
                   name: str = "simple") -> RolloutState:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = state_of(api, name)
        if state is not None and condition(state):
            return state
        time.sleep(0.2)
    raise AssertionError(f"not {what} after {timeout}s: {state}")


def new_revision(api: KubeApi, extra_args: tuple[str, ...], version: str, canary: int = 20) -> None:
    """Apply a new predictor spec with a canary split, as a release pipeline would."""
    args = ["kubemind_predictors.simple", "--model_name=simple", f"--versions={version}", "--http_port=8080",
            *extra_args]
    container = isvc(api)["spec"]["predictor"]["containers"][0]
    api.patch_isvc("kubemind", "simple", {"spec": {"predictor": {
        "canaryTrafficPercent": canary, "containers": [{**container, "args": args}]}}})




def wait_for_rolled_out(api: KubeApi, revision: str, timeout: float = 60.0) -> dict[str, Any]:
    """The predictor's status once `up` has rolled `revision` out (it reconciles after a patch)."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = predictor_status(api)
        if status.get("latestRolledoutRevision") == revision:
            return status
        time.sleep(0.2)
    raise AssertionError(f"{revision} not rolled out after {timeout}s: {status}")
