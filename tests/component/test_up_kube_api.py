"""`kubemind up`'s Kubernetes API, driven by the real kubectl and the `kubernetes` client.

One `up` of a one-replica `simple` serves the tests in order: a canary made and moved through
the API reconciles processes and gateway, a new InferenceService applied with kubectl starts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
import yaml
from kubernetes import client, watch

from tests.component.serve_fixtures import wait_dead
from tests.component.up_fixtures import (
    Up,
    process_pids,
    revisions,
    simple_service,
    virtual_service,
    write_overlay,
)

ISVC = ("serving.kserve.io", "v1beta1", "kubemind", "inferenceservices")
STATUS_TIMEOUT = 120.0


def infer_version(base_url: str, model: str = "simple") -> str:
    tensors = [triton_http.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for tensor in tensors:
        tensor.set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16))
    return str(triton_http.InferenceServerClient(base_url).infer(model, tensors).get_response()["model_version"])


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    running = Up(write_overlay(tmp_path_factory.mktemp("overlay") / "local", min_replicas=1),
                 tmp_path_factory.mktemp("home"))
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def objects(up: Up) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(up.kube_client())


def wait_for_object(objects: client.CustomObjectsApi, name: str, condition: Callable[[dict[str, Any]], bool],
                    what: str) -> dict[str, Any]:
    deadline = time.monotonic() + STATUS_TIMEOUT
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            found = objects.get_namespaced_custom_object(*ISVC, name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        if found and condition(found):
            return found
        time.sleep(0.2)
    raise AssertionError(f"{name}: not {what} after {STATUS_TIMEOUT}s: {json.dumps(found.get('status'), indent=1)}")


def ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status", {})
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return conditions.get("Ready") == "True" and status.get("observedGeneration") == obj["metadata"]["generation"]


def traffic(obj: dict[str, Any]) -> list[tuple[str | None, int, bool]]:
    return sorted((t.get("tag"), t["percent"], t["latestRevision"])
                  for t in obj.get("status", {}).get("components", {}).get("predictor", {}).get("traffic", []))


def test_kubectl_get_isvc_shows_the_service_ready_with_kserve_status(up: Up, objects: client.CustomObjectsApi) -> None:
    obj = wait_for_object(objects, "simple", ready, "Ready")
    table = up.kubectl("get", "isvc")  # the short name, from discovery; the namespace from the kubeconfig
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "URL", "READY", "PREV"]
    gateway = up.state()["gateway"]["http_port"]
    assert row.split()[:4] == ["simple", f"http://simple.kubemind.localhost:{gateway}", "True", "100"]
    revision = revisions(up.state())[0]["revision"]
    predictor = obj["status"]["components"]["predictor"]
    assert predictor["latestReadyRevision"] == predictor["latestRolledoutRevision"] == revision
    assert traffic(obj) == [(None, 100, True)]
    listed = json.loads(up.kubectl("get", "inferenceservices", "-A", "-o", "json").stdout)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["simple"]


def test_a_canary_moved_through_the_api_reconciles_processes_and_gateway(
        up: Up, objects: client.CustomObjectsApi) -> None:
    stable = revisions(up.state())[0]["revision"]
    start = objects.list_namespaced_custom_object(*ISVC)["metadata"]["resourceVersion"]
    events: list[dict[str, Any]] = []
    watcher = threading.Thread(target=lambda: events.extend(watch.Watch().stream(
        objects.list_namespaced_custom_object, *ISVC, resource_version=start, timeout_seconds=150)), daemon=True)
    watcher.start()
    # A new revision at 20% (merge patch from the client: lists are replaced whole).
    spec = simple_service(versions="2", min_replicas=1, canary=20)["spec"]
    objects.patch_namespaced_custom_object(*ISVC, "simple", {"spec": spec})
    obj = wait_for_object(objects, "simple", lambda o: ready(o) and traffic(o) == [
        ("latest", 20, True), ("prev", 80, False)], "split 80/20")
    predictor = obj["status"]["components"]["predictor"]
    assert predictor["latestRolledoutRevision"] == stable != predictor["latestReadyRevision"]
    served = [infer_version(up.base_url) for _ in range(100)]
    # Binomial(100, 0.2): mean 20, sd 4.
    assert 3 <= served.count("2") <= 45 and served.count("1") + served.count("2") == 100, served.count("2")
    # kubectl patch to 0: everything back on the previous revision, the canary keeps running.
    patched = up.kubectl("patch", "isvc", "simple", "--type", "merge", "-p",
                         '{"spec": {"predictor": {"canaryTrafficPercent": 0}}}')
    assert patched.returncode == 0 and "patched" in patched.stdout, patched.stderr
    wait_for_object(objects, "simple", lambda o: ready(o) and traffic(o) == [
        ("latest", 0, True), ("prev", 100, False)], "all on prev")
    assert {infer_version(up.base_url) for _ in range(30)} == {"1"}
    # `kubemind status` agrees (its state file is written once a second).
    up.wait_for(lambda s: sorted(r["traffic"] for r in revisions(s)) == [0, 100], "status 100/0")
    row = up.kubectl("get", "isvc", "simple", "--no-headers").stdout.split()
    assert row[3:5] == ["100", "0"] and row[5] == stable
    # The watch saw the spec change and the status that followed it, in resourceVersion order.
    deadline = time.monotonic() + 30
    while not any(e["object"].get("status", {}).get("components", {}).get("predictor", {}).get("traffic", [{}])[0]
                  .get("percent") == 0 for e in events) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert {e["type"] for e in events} == {"MODIFIED"}
    assert any(e["object"]["spec"]["predictor"].get("canaryTrafficPercent") == 0 for e in events)
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(start)


def test_a_patch_validate_rejects_is_a_422_status_naming_the_field(up: Up, objects: client.CustomObjectsApi) -> None:
    before = objects.get_namespaced_custom_object(*ISVC, "simple")
    args = before["spec"]["predictor"]["containers"][0]["args"]
    bad = [{"op": "add", "path": "/spec/predictor/containers/0/args/-", "value": "--no_such_flag=1"}]
    refused = up.kubectl("patch", "isvc", "simple", "--type", "json", "-p", json.dumps(bad))
    assert refused.returncode == 1
    assert 'InferenceService "simple" is invalid: spec.predictor.containers[0].args' in refused.stderr
    assert "unrecognized arguments: --no_such_flag=1" in refused.stderr
    with pytest.raises(client.ApiException) as raised:
        objects.patch_namespaced_custom_object(*ISVC, "simple", {"spec": {"predictor": {"minReplicas": "two"}}})
    status = json.loads(raised.value.body)
    assert raised.value.status == 422 and status["kind"] == "Status" and status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == "spec.predictor.minReplicas"
    after = objects.get_namespaced_custom_object(*ISVC, "simple")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"] or \
        after["spec"] == before["spec"]
    assert after["spec"]["predictor"]["containers"][0]["args"] == args


def test_what_the_api_does_not_implement_is_a_status_error_not_a_hang(
        up: Up, objects: client.CustomObjectsApi) -> None:
    # Strategic merge patch: 415 for a custom resource, as a real API server answers.
    strategic = up.kubectl("patch", "isvc", "simple", "-p", '{"spec": {"predictor": {"canaryTrafficPercent": 5}}}')
    assert strategic.returncode == 1 and "strategic-merge-patch+json is not supported" in strategic.stderr
    # InferenceGraphs are read-only here: they come from the overlay.
    with pytest.raises(client.ApiException) as raised:
        objects.create_namespaced_custom_object("serving.kserve.io", "v1alpha1", "kubemind", "inferencegraphs", {
            "apiVersion": "serving.kserve.io/v1alpha1", "kind": "InferenceGraph", "metadata": {"name": "g"}})
    assert raised.value.status == 405 and json.loads(raised.value.body)["reason"] == "MethodNotAllowed"
    base = f"{up.api_url}/apis/serving.kserve.io/v1beta1/namespaces/kubemind/inferenceservices"
    for method, url, code, reason in (("DELETE", base, 405, "MethodNotAllowed"),
                                      ("GET", f"{base}/simple/scale", 404, "NotFound"),
                                      ("PUT", f"{base}/simple", 422, "Invalid")):
        answer = httpx.request(method, url, json={"metadata": {"name": "simple"}}, timeout=10)
        assert answer.status_code == code and answer.json()["kind"] == "Status"
        assert answer.json()["reason"] == reason, answer.json()
    # A stale resourceVersion is a conflict, as optimistic concurrency expects.
    current = objects.get_namespaced_custom_object(*ISVC, "simple")
    stale = {**current, "metadata": {**current["metadata"], "resourceVersion": "1"}}
    with pytest.raises(client.ApiException) as conflict:
        objects.replace_namespaced_custom_object(*ISVC, "simple", stale)
    assert conflict.value.status == 409


def test_a_virtual_service_written_through_the_api_routes_the_gateway_and_a_bad_one_is_a_422(
        up: Up, objects: client.CustomObjectsApi) -> None:
    # The release controller mirrors a shadow through VirtualServices: they take writes too.
    vs = ("networking.istio.io", "v1", "kubemind", "virtualservices")
    body = virtual_service("simple-edge", "simple.api.example.com")
    gateway = f"http://127.0.0.1:{up.state()['gateway']['http_port']}"
    created = objects.create_namespaced_custom_object(*vs, body)
    assert created["metadata"]["resourceVersion"]
    deadline = time.monotonic() + STATUS_TIMEOUT
    answer = None
    while time.monotonic() < deadline:
        answer = httpx.post(f"{gateway}/v2/models/simple/infer", headers={"host": "simple.api.example.com"},
                            json={"inputs": [{"name": n, "datatype": "INT32", "shape": [1, 16], "data": list(range(16))}
                                             for n in ("INPUT0", "INPUT1")]}, timeout=10)
        if answer.status_code == 200:
            break
        time.sleep(0.3)
    assert answer is not None and answer.status_code == 200, answer.text if answer else None
    with pytest.raises(client.ApiException) as raised:
        objects.patch_namespaced_custom_object(*vs, "simple-edge", {"spec": {"http": [
            {**body["spec"]["http"][0], "mirrorPercentage": {"value": "half"}}]}})
    status = json.loads(raised.value.body)
    assert raised.value.status == 422 and status["details"]["group"] == "networking.istio.io"
    assert status["details"]["causes"][0]["field"] == "spec.http[0].mirrorPercentage.value", status
    # Istio's other kinds come from the overlay: read-only here.
    with pytest.raises(client.ApiException) as refused:
        objects.create_namespaced_custom_object("networking.istio.io", "v1", "kubemind", "gateways", {
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "g"}})
    assert refused.value.status == 405
    objects.delete_namespaced_custom_object(*vs, "simple-edge")


def test_kubectl_apply_of_a_new_inference_service_starts_it_and_delete_stops_it(
        up: Up, objects: client.CustomObjectsApi, tmp_path: Path) -> None:
    manifest = tmp_path / "second.yaml"
    manifest.write_text(yaml.safe_dump(simple_service(
        "second", versions="3", min_replicas=1, image="registry.kubemind.dev/kubemind/core:0.1.0")))
    applied = up.kubectl("apply", "-f", str(manifest))
    assert applied.returncode == 0 and "inferenceservice.serving.kserve.io/second created" in applied.stdout, \
        applied.stderr
    wait_for_object(objects, "second", ready, "Ready")
    gateway = up.state()["gateway"]["http_port"]
    assert infer_version(f"127.0.0.1:{gateway}/serving/kubemind/second", "second") == "3"
    again = up.kubectl("apply", "-f", str(manifest))
    assert "unchanged" in again.stdout, again.stderr
    pids = next(process_pids({"services": [s]}) for s in up.state()["services"] if s["name"] == "second")
    deleted = up.kubectl("delete", "isvc", "second")
    assert deleted.returncode == 0, deleted.stderr
    up.wait_for(lambda s: [svc["name"] for svc in s["services"]] == ["simple"], "second removed")
    assert all(wait_dead(pid) for pid in pids)
