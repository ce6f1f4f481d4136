"""The async jobs path at the edge (istio/components/async-jobs, staging and prod): a client's
submit and status calls reach the job writer's Service through the gateway, behind the JWT the
other routes need; the predictor admits the gateway for those two routes only and the CV worker
for the gRPC calls it makes only; dev routes nothing to a Service it does not have.

Requests are resolved the way Istio resolves them (first matching HTTP route; ALLOW rules OR'ed,
a rule's `from` and `to` AND'ed), against the committed renderings of both trees."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from kubemind.local.up.policy import istio_match
from kubemind.manifests.istio_routes import KNATIVE_LOCAL_GATEWAY, route_destination, service_name
from kubemind.manifests.references import defined
from kubemind.manifests.rendering import parse_stream
from kubemind.protocol.grpc_server import SERVICE_NAME
from kubemind.release.shadow import routes_to
from tests.manifests.conftest import ENVIRONMENTS, REPO

NAMESPACE = "kubemind"
HOST = "cv-classifier.models.kubemind.dev"
SUBMIT, STATUS = "/v2/models/cv-classifier/jobs", "/v2/jobs/0b7f6a3e-5a8e-4a43-9d0c-4d3b7f1c2e11"
GATEWAY = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
TRANSFORMER = "cluster.local/ns/kubemind/sa/cv-classifier-transformer"
ACTIVATOR = "cluster.local/ns/knative-serving/sa/activator"
AUTOSCALER = "cluster.local/ns/knative-serving/sa/controller"
INFER, METADATA = f"/{SERVICE_NAME}/ModelInfer", f"/{SERVICE_NAME}/ModelMetadata"


def _rendered(tree: str, env: str) -> list[dict[str, Any]]:
    return [o for o in yaml.safe_load_all((REPO / tree / "rendered" / f"{env}.yaml").read_text()) if o]


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _route(virtual_service: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    """The HTTP route Istio picks for a request: the first whose match (any entry; all of its
    uri and method conditions) the request meets."""

    def matches(condition: dict[str, Any], value: str) -> bool:
        if "exact" in condition:
            return value == condition["exact"]
        if "prefix" in condition:
            return value.startswith(condition["prefix"])
        raise AssertionError(f"a match this test does not model: {condition}")

    for http in virtual_service["spec"]["http"]:
        for match in http.get("match") or [{}]:
            assert set(match) <= {"uri", "method"}, match
            if matches(match.get("uri", {"prefix": "/"}), path) and matches(match.get("method", {"prefix": ""}), method):
                return dict(http)
    return None


def _allowed(policy: dict[str, Any], principal: str, method: str, path: str, port: int) -> bool:
    """Whether an ALLOW AuthorizationPolicy admits a request from this mTLS principal."""
    assert policy["spec"].get("action", "ALLOW") == "ALLOW"

    def source_ok(source: dict[str, Any]) -> bool:
        assert set(source) == {"principals"}, source  # namespaces, ipBlocks, notPrincipals: not modelled
        return any(istio_match(p, principal) for p in source["principals"])

    def operation_ok(operation: dict[str, Any]) -> bool:
        assert set(operation) <= {"ports", "methods", "paths"}, operation
        return (
            ("ports" not in operation or str(port) in operation["ports"])
            and ("methods" not in operation or method in operation["methods"])
            and ("paths" not in operation or any(istio_match(p, path) for p in operation["paths"]))
        )

    for rule in policy["spec"].get("rules") or []:
        sources = [entry["source"] for entry in rule.get("from") or []]
        operations = [entry["operation"] for entry in rule.get("to") or []]
        if (not sources or any(source_ok(s) for s in sources)) and (not operations or any(operation_ok(o) for o in operations)):
            return True
    return False


def _jobs_service(env: str) -> dict[str, Any]:
    return _one(_rendered("inferenceservices", env), "Service", "cv-classifier-jobs")


def _writer_port(env: str) -> int:
    """The port the job writer's REST routes listen on in the predictor pod (the Service's target)."""
    (port,) = _jobs_service(env)["spec"]["ports"]
    return int(port["targetPort"])


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_the_jobs_routes_reach_the_jobs_service_behind_the_jwt(env: str) -> None:
    mesh = _rendered("istio", env)
    virtual_service = _one(mesh, "VirtualService", "cv-classifier")
    (port,) = _jobs_service(env)["spec"]["ports"]

    for method, path in (("POST", SUBMIT), ("GET", STATUS)):
        route = _route(virtual_service, method, path)
        assert route is not None, (method, path)
        (destination,) = route["route"]
        assert service_name(destination["destination"]["host"], NAMESPACE) == (NAMESPACE, "cv-classifier-jobs")
        assert destination["destination"]["port"]["number"] == port["port"]
        assert "mirror" not in route  # a mirrored submit would publish the job twice
    # The other calls still go to the InferenceService through Knative's local gateway.
    for method, path in (("POST", "/v2/models/efficientnet_lite0/infer"), ("GET", SUBMIT), ("POST", "/v2/jobs/x")):
        route = _route(virtual_service, method, path)
        assert route is not None and route_destination(route) == "cv-classifier.kubemind.svc.cluster.local", (method, path)
    # The release controller mirrors only routes to the InferenceService: not the jobs routes.
    routed = {index for index, http in enumerate(virtual_service["spec"]["http"])
              if service_name(route_destination(http), NAMESPACE)[1] == "cv-classifier-jobs"}
    assert routed and not routed & set(routes_to(virtual_service, "cv-classifier", NAMESPACE))
    # The same gateway and host as the other routes, so the same JWT requirement.
    assert virtual_service["spec"]["gateways"] == ["kubemind-gateway"] and virtual_service["spec"]["hosts"] == [HOST]
    require_jwt = _one(mesh, "AuthorizationPolicy", "require-jwt")
    ((rule,),) = [require_jwt["spec"]["rules"]]
    assert rule["from"][0]["source"]["requestPrincipals"] == ["https://auth.kubemind.dev/*"]
    assert any(istio_match(h, HOST) for h in rule["to"][0]["operation"]["hosts"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_route_goes_to_a_service_of_its_environment(env: str) -> None:
    """dev has no job writer, so no route to cv-classifier-jobs; every destination of an overlay
    is a Service (or, through Knative's local gateway, an InferenceService) the same
    environment's inferenceservices rendering defines."""
    rendering = (REPO / "inferenceservices" / "rendered" / f"{env}.yaml").read_text()
    served = {ref for obj in parse_stream(rendering, f"inferenceservices/{env}") for ref in defined(obj)}
    services = {(ref.namespace, ref.name) for ref in served if ref.kind == "Service"}
    for virtual_service in (o for o in _rendered("istio", env) if o["kind"] == "VirtualService"):
        namespace = virtual_service["metadata"]["namespace"]
        for http in virtual_service["spec"]["http"]:
            for destination in http["route"]:
                host = destination["destination"]["host"]
                target = route_destination(http) if host == KNATIVE_LOCAL_GATEWAY else host
                assert service_name(target, namespace) in services, (env, virtual_service["metadata"]["name"], target)


def test_dev_routes_nothing_to_the_job_writer() -> None:
    virtual_service = _one(_rendered("istio", "dev"), "VirtualService", "cv-classifier")
    policy = _one(_rendered("istio", "dev"), "AuthorizationPolicy", "cv-classifier-predictor-from-transformer")

    assert route_destination(_route(virtual_service, "POST", SUBMIT) or {}) == "cv-classifier.kubemind.svc.cluster.local"
    assert not _allowed(policy, GATEWAY, "POST", SUBMIT, 8080)


def _worker_principal(env: str) -> str:
    """The cv-worker Deployment's identity: its own ServiceAccount, defined beside it."""
    served = _rendered("inferenceservices", env)
    pod = _one(served, "Deployment", "cv-worker")["spec"]["template"]["spec"]
    account = pod.get("serviceAccountName", "default")
    assert account != "default", "the worker runs under the namespace's default ServiceAccount"
    _one(served, "ServiceAccount", account)
    return f"cluster.local/ns/{NAMESPACE}/sa/{account}"


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_the_predictor_admits_the_worker_and_the_gateway_for_their_calls_only(env: str) -> None:
    policy = _one(_rendered("istio", env), "AuthorizationPolicy", "cv-classifier-predictor-from-transformer")
    worker, writer_port = _worker_principal(env), _writer_port(env)
    grpc_port = 8081  # components/grpc: the predictor's h2c port

    assert policy["spec"]["selector"]["matchLabels"] == _jobs_service(env)["spec"]["selector"]
    # The worker: the two RPCs it makes, whatever port Knative's mesh route delivers them on.
    assert _allowed(policy, worker, "POST", INFER, grpc_port) and _allowed(policy, worker, "POST", METADATA, grpc_port)
    for path in (f"/{SERVICE_NAME}/RepositoryModelLoad", f"/{SERVICE_NAME}/RepositoryModelUnload", SUBMIT):
        assert not _allowed(policy, worker, "POST", path, grpc_port), path
    assert not _allowed(policy, worker, "GET", STATUS, writer_port)
    # The gateway: the two jobs routes on the writer's port, nothing else of the predictor.
    assert _allowed(policy, GATEWAY, "POST", SUBMIT, writer_port) and _allowed(policy, GATEWAY, "GET", STATUS, writer_port)
    for method, path, port in (("POST", "/v2/models/cv-classifier/infer", writer_port), ("POST", SUBMIT, grpc_port),
                               ("DELETE", STATUS, writer_port), ("POST", INFER, grpc_port),
                               ("GET", "/v2/models/cv-classifier", writer_port), ("GET", "/metrics", writer_port),
                               ("POST", "/v2/repository/models/cv-classifier/unload", writer_port)):  # fmt: skip
        assert not _allowed(policy, GATEWAY, method, path, port), (method, path, port)
    # Nobody else: no rule without principals, no wildcard, the default ServiceAccount refused.
    for other in (f"cluster.local/ns/{NAMESPACE}/sa/default", "cluster.local/ns/other/sa/cv-worker", "spiffe://x"):
        assert not any(_allowed(policy, other, m, p, port) for m, p, port in
                       (("POST", INFER, grpc_port), ("POST", SUBMIT, writer_port), ("GET", STATUS, writer_port))), other
    principals = [p for rule in policy["spec"]["rules"] for entry in rule["from"] for p in entry["source"]["principals"]]
    assert sorted(principals) == sorted([TRANSFORMER, ACTIVATOR, AUTOSCALER, GATEWAY, worker])
