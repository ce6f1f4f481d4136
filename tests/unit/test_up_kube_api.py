"""The pure parts of `kubemind up`'s Kubernetes API: patches, printer columns, KServe status, the store."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from kubemind.local.up.kube_objects import ObjectStore
from kubemind.local.up.kube_patch import PatchError, json_patch, merge_patch
from kubemind.local.up.kube_resources import find_resource, human_duration, json_path, table
from kubemind.local.up.kube_status import inference_service_status
from kubemind.manifests.problems import ManifestObject


def test_merge_patch_is_rfc_7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "list": [3]}
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "list": [3]}
    assert target["c"] == {"d": "e", "f": "g"}  # the target is not changed


def test_json_patch_is_rfc_6902() -> None:
    doc = {"spec": {"args": ["a"], "n": 1}}
    patched = json_patch(doc, [
        {"op": "add", "path": "/spec/args/-", "value": "b"},
        {"op": "replace", "path": "/spec/n", "value": 2},
        {"op": "copy", "from": "/spec/n", "path": "/spec/m"},
        {"op": "move", "from": "/spec/m", "path": "/spec/k~1x"},
        {"op": "test", "path": "/spec/args/1", "value": "b"},
        {"op": "remove", "path": "/spec/args/0"},
    ])
    assert patched == {"spec": {"args": ["b"], "n": 2, "k/x": 2}}
    assert doc == {"spec": {"args": ["a"], "n": 1}}
    for bad in ([{"op": "replace", "path": "/spec/none", "value": 1}], [{"op": "test", "path": "/spec/n", "value": 5}],
                [{"op": "add", "path": "spec", "value": 1}], {"op": "add"}):
        with pytest.raises(PatchError):
            json_patch(doc, bad)


def test_printer_columns_read_kserve_status_as_kubectl_shows_it() -> None:
    obj = {"metadata": {"name": "simple", "creationTimestamp": "2026-12-02T10:00:00Z"}, "status": {
        "url": "http://simple", "conditions": [{"type": "PredictorReady", "status": "False"},
                                               {"type": "Ready", "status": "True"}],
        "components": {"predictor": {"traffic": [
            {"tag": "latest", "percent": 20, "latestRevision": True, "revisionName": "new"},
            {"tag": "prev", "percent": 80, "latestRevision": False, "revisionName": "old"}]}}}}
    assert json_path(obj, ".status.conditions[?(@.type=='Ready')].status") == ["True"]
    assert json_path(obj, ".status.components.predictor.traffic[?(@.latestRevision==true)].percent") == [20]
    assert json_path(obj, ".status.components.predictor.traffic[*].revisionName") == ["new", "old"]
    assert json_path(obj, ".status.nothing[0]") == []
    resource = find_resource("v1beta1", "inferenceservices")
    assert resource is not None and resource.short_names == ("isvc",)
    rendered = table(resource, [obj], "7", now=datetime(2026, 12, 2, 10, 5, 30, tzinfo=timezone.utc))
    assert [c["name"] for c in rendered["columnDefinitions"]][:4] == ["Name", "URL", "Ready", "Prev"]
    assert rendered["rows"][0]["cells"] == ["simple", "http://simple", "True", 80, 20, "old", "new", "5m30s"]
    assert [human_duration(s) for s in (5, 200, 1800, 4 * 3600 + 60, 20 * 3600, 3 * 86400)] == [
        "5s", "3m20s", "30m", "4h1m", "20h", "3d"]


def _service(traffic: dict[str, int], ready: dict[str, int]) -> dict:
    return {"name": "simple", "namespace": "kubemind", "problem": None, "url": "http://simple.kubemind.localhost:1",
            "path_url": "http://127.0.0.1:1/serving/kubemind/simple", "components": [{
                "component": "predictor", "latest": "new", "rolled_out": "old", "previous_rolled_out": "older",
                "problem": None, "traffic": traffic, "address": {"http": "127.0.0.1:2", "grpc": "127.0.0.1:3"},
                "revisions": [{"revision": name, "ready": count, "wanted": 1} for name, count in ready.items()]}]}


def test_a_canary_status_has_kserves_tagged_traffic_and_conditions() -> None:
    status = inference_service_status(_service({"old": 80, "new": 20}, {"old": 1, "new": 1}), 3)
    predictor = status["components"]["predictor"]
    assert predictor["traffic"] == [
        {"tag": "latest", "revisionName": "new", "percent": 20, "latestRevision": True},
        {"tag": "prev", "revisionName": "old", "percent": 80, "latestRevision": False}]
    assert (predictor["latestReadyRevision"], predictor["latestRolledoutRevision"],
            predictor["previousRolledoutRevision"]) == ("new", "old", "older")
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "IngressReady": "True", "LatestDeploymentReady": "True", "PredictorReady": "True", "Ready": "True"}
    assert status["observedGeneration"] == 3 and status["url"] == "http://simple.kubemind.localhost:1"
    # The latest revision still starting, the old one serving: ready, the latest deployment not yet.
    starting = inference_service_status(_service({"old": 100}, {"old": 1, "new": 0}), 4, status)
    conditions = {c["type"]: c for c in starting["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["LatestDeploymentReady"]["status"] == "False"
    assert conditions["Ready"]["lastTransitionTime"] == {c["type"]: c for c in status["conditions"]}["Ready"][
        "lastTransitionTime"]
    assert starting["components"]["predictor"]["latestReadyRevision"] == "old"
    down = inference_service_status(_service({"old": 100}, {"old": 0, "new": 0}), 4)
    assert {c["type"]: c for c in down["conditions"]}["Ready"]["message"] == "old: 0/1 replicas ready"


def test_the_store_versions_every_change_and_keeps_api_edits_until_the_overlay_changes_the_object() -> None:
    store = ObjectStore()
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "s", "namespace": "kubemind"}, "spec": {"predictor": {"minReplicas": 1}}}
    store.sync_rendered([ManifestObject("overlay", isvc)])
    key = ("serving.kserve.io", "InferenceService", "kubemind", "s")
    edited = {**isvc, "spec": {"predictor": {"minReplicas": 2}}}
    store.put(edited)
    assert store.get(key)["metadata"]["generation"] == 2  # type: ignore[index]
    generation = store.generation
    store.set_status(key, {"url": "x"})
    store.set_status(key, {"url": "x"})  # unchanged: no event
    assert store.generation == generation and store.resource_version == 3
    store.sync_rendered([ManifestObject("overlay", isvc)])  # the same render: the API's edit stays
    assert store.get(key)["spec"]["predictor"]["minReplicas"] == 2  # type: ignore[index]
    store.sync_rendered([])
    assert store.get(key) is None
    assert [e.type for e in store.events_after(0, 0)] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]
