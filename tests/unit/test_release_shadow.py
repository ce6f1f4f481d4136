"""The shadow phase's mirror on the VirtualServices: added to the routes that reach the
InferenceService, to the candidate revision's Service, and removed again, leaving others alone."""

from __future__ import annotations

import json
from typing import Any

from kubemind.local.up.kube_patch import merge_patch
from kubemind.manifests.istio_routes import KNATIVE_LOCAL_GATEWAY
from kubemind.release.shadow import MIRROR_ANNOTATION, mirror_patch, routes_to


def via_knative(authority: str, prefix: str = "/", **extra: Any) -> dict[str, Any]:
    return {"match": [{"uri": {"prefix": prefix}}], "rewrite": {"authority": authority},
            "route": [{"destination": {"host": KNATIVE_LOCAL_GATEWAY, "port": {"number": 80}}}], **extra}


def virtual_service(*http: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "edge", "namespace": "kubemind", "resourceVersion": "7"},
            "spec": {"hosts": ["models.example.com"], "http": list(http)}}


def applied(body: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    assert patch is not None
    read = body["metadata"]["resourceVersion"]
    assert patch["metadata"]["resourceVersion"] == read  # conditional on what was read
    result = merge_patch(body, patch)
    result["metadata"]["resourceVersion"] = str(int(read) + 1)
    return result


def test_the_routes_to_the_service_mirror_the_candidate_revision_and_no_other_route_changes() -> None:
    theirs = {"host": "audit.kubemind.svc.cluster.local"}
    body = virtual_service(
        via_knative("scorer.kubemind.svc.cluster.local", "/v2/models/scorer"),
        via_knative("llm-chat.kubemind.svc.cluster.local", "/openai"),
        {"match": [{"uri": {"prefix": "/direct"}}], "route": [{"destination": {"host": "scorer"}}]},
        via_knative("scorer.kubemind.svc.cluster.local", "/audited", mirror=theirs),
    )
    assert routes_to(body, "scorer", "kubemind") == [0, 2, 3]
    mirrored = applied(body, mirror_patch(body, "scorer", "kubemind", "scorer-predictor-00002", 50))
    http = mirrored["spec"]["http"]
    for index in (0, 2):
        assert http[index]["mirror"] == {"host": "scorer-predictor-00002.kubemind.svc.cluster.local",
                                         "port": {"number": 80}}
        assert http[index]["mirrorPercentage"] == {"value": 50.0}
    assert "mirror" not in http[1] and http[3]["mirror"] == theirs  # another service; a mirror set by hand
    assert json.loads(mirrored["metadata"]["annotations"][MIRROR_ANNOTATION]) == {
        "revision": "scorer-predictor-00002", "routes": [0, 2]}
    # Asked again each interval: nothing to write.
    assert mirror_patch(mirrored, "scorer", "kubemind", "scorer-predictor-00002", 50) is None
    # A newer candidate replaces the mirror; the end of the shadow phase removes it, and only it.
    newer = applied(mirrored, mirror_patch(mirrored, "scorer", "kubemind", "scorer-predictor-00003", 50))
    assert newer["spec"]["http"][0]["mirror"]["host"].startswith("scorer-predictor-00003.")
    cleared = applied(newer, mirror_patch(newer, "scorer", "kubemind", None, 0))
    assert cleared["spec"]["http"] == body["spec"]["http"]
    assert MIRROR_ANNOTATION not in (cleared["metadata"].get("annotations") or {})
    assert mirror_patch(cleared, "scorer", "kubemind", None, 0) is None


def test_a_virtual_service_that_does_not_route_to_the_service_is_not_written() -> None:
    body = virtual_service(via_knative("llm-chat.kubemind.svc.cluster.local"))
    assert routes_to(body, "scorer", "kubemind") == []
    assert mirror_patch(body, "scorer", "kubemind", "scorer-predictor-00002", 100) is None
    # The same name in another namespace is another service.
    assert routes_to(virtual_service(via_knative("scorer.other.svc.cluster.local")), "scorer", "kubemind") == []
