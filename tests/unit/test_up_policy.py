"""VirtualServices as the local gateway reads them (kubemind/local/up/policy.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from kubemind.local.up.policy import gateway_policy, istio_match
from kubemind.manifests.istio_routes import service_name
from kubemind.manifests.problems import ManifestObject

REPO = Path(__file__).resolve().parents[2]


def test_istio_base_virtual_services_route_through_knative_by_their_rewritten_authority() -> None:
    path = REPO / "istio" / "base" / "virtualservices.yaml"
    objects = [ManifestObject(str(path), body) for body in yaml.safe_load_all(path.read_text())]
    routes = {route.source: route for route in gateway_policy(objects).routes}
    chat = routes["VirtualService/kubemind/llm-chat"]
    assert chat.hosts == ("llm-chat.models.kubemind.dev",) and chat.prefix == "/"
    assert service_name(chat.destination, chat.namespace) == ("kubemind", "llm-chat")
    # Its mirror is Knative's gateway itself: no service `up` runs (the runner reports it).
    assert (
        chat.mirror == "knative-local-gateway.istio-system.svc.cluster.local"
        and chat.mirror_percent == 5.0
    )
    assert routes["VirtualService/kubemind/cv-classifier"].mirror is None


def test_service_names_and_istio_matches() -> None:
    assert service_name("shadow", "kubemind") == ("kubemind", "shadow")
    assert service_name("shadow.other", "kubemind") == ("other", "shadow")
    assert service_name("shadow.other.svc.cluster.local", "kubemind") == ("other", "shadow")
    assert istio_match("*.models.kubemind.dev", "simple.models.kubemind.dev")
    assert not istio_match("*.models.kubemind.dev", "simple.kubemind.localhost")
    assert istio_match("https://auth.kubemind.dev/*", "https://auth.kubemind.dev/alice")
    assert istio_match("*", "anyone") and not istio_match("*", "")
