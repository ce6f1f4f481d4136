"""`kubemind up`'s planning and gateway configuration, without starting anything (nginx -t aside)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubemind.local.up.certs import local_certificate
from kubemind.local.up.gateway import (
    ComponentRoute,
    GatewayConfig,
    HostRoute,
    RevisionRoute,
    ServiceRoute,
    nginx_binary,
    render_config,
)
from kubemind.local.up.policy import gateway_policy
from kubemind.local.up.specs import NotRunnableLocally, plan_services, revision_name
from kubemind.local.up.storage import local_model_dir
from kubemind.manifests.problems import ManifestObject
from kubemind_predictors.triton.launcher import TritonInstall
from kubemind_predictors.triton.stock_server import main as stock_server_main
from kubemind_predictors.triton.stock_server import tritonserver_command

REPO = Path(__file__).resolve().parents[2]


def isvc(predictor: dict[str, Any], transformer: dict[str, Any] | None = None) -> ManifestObject:
    spec: dict[str, Any] = {"predictor": predictor}
    if transformer:
        spec["transformer"] = transformer
    return ManifestObject("test", {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                   "metadata": {"name": "svc", "namespace": "ns"}, "spec": spec})


def container(image: str, *args: str) -> dict[str, Any]:
    return {"containers": [{"name": "kserve-container", "image": image, "args": list(args)}]}


def runtime(name: str, image: str, *args: str, fmt: str = "onnx", priority: int = 1) -> ManifestObject:
    return ManifestObject("test", {"kind": "ClusterServingRuntime", "metadata": {"name": name}, "spec": {
        "supportedModelFormats": [{"name": fmt, "autoSelect": True, "priority": priority}],
        "containers": [{"name": "kserve-container", "image": image, "args": list(args)}]}})


STORAGE = ManifestObject("test", {"kind": "ClusterStorageContainer", "metadata": {"name": "models"},
                                  "spec": {"supportedUriFormats": [{"prefix": "models:/"}]}})


def assert_nginx_accepts(folder: Path, text: str) -> None:
    (folder / "nginx.conf").write_text(text)
    checked = subprocess.run([nginx_binary(), "-t", "-p", str(folder), "-c", str(folder / "nginx.conf"),
                              "-e", str(folder / "error.log")], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


def test_a_container_runs_its_images_module_with_its_args_and_local_ports() -> None:
    [service] = plan_services([isvc(container("reg.io/kubemind/core:1", "kubemind_predictors.simple",
                                              "--model_name=simple", "--http_port=8080", "--grpc_port", "8081"))])
    plan = service.components["predictor"]
    assert plan.module == "kubemind_predictors.simple"
    # The pod's ports are replaced by ports chosen at run time.
    assert plan.args == ("--model_name=simple",)
    assert plan.min_replicas == 1 and plan.canary_percent is None


def test_a_model_runs_on_its_runtime_with_the_runtimes_local_flags_first() -> None:
    predictor = {"model": {"modelFormat": {"name": "huggingface"}, "storageUri": "models:/llm/3",
                           "args": ["--max_model_len=512"]}, "minReplicas": 0}
    objects = [isvc(predictor), STORAGE,
               runtime("kubemind-vllm", "kubemind/predictor-vllm-cpu", "--model_name={{.Name}}",
                       "--model_dir=/mnt/models", fmt="huggingface")]
    plan = plan_services(objects)[0].components["predictor"]
    assert plan.module == "kubemind_predictors.vllm"
    assert plan.args[-3:] == ("--model_name=svc", "--model_dir=/mnt/models", "--max_model_len=512")
    assert "--dtype" in plan.args[: -3]  # the CPU flags of kubemind.runtimes, overridable by the spec
    assert plan.storage_uri == "models:/llm/3" and plan.min_replicas == 0


def test_a_custom_transformers_storage_uri_variable_is_its_storage_as_kserve_reads_it() -> None:
    """KServe runs the storage initializer for a custom container that sets STORAGE_URI (the RAG
    transformer's registered index); `up` initializes it into the node cache the same way."""
    transformer = container("kubemind/transformer-rag", "--index_dir=/mnt/models")
    transformer["containers"][0]["env"] = [{"name": "STORAGE_URI", "value": "models:/docs-index@champion"}]
    [service] = plan_services([isvc(container("kubemind/core", "kubemind_predictors.simple"), transformer), STORAGE])
    assert service.problem is None
    plan = service.components["transformer"]
    assert plan.storage_uri == "models:/docs-index@champion" and plan.args[-1] == "--index_dir=/mnt/models"
    assert service.components["predictor"].storage_uri is None


def test_the_revision_changes_with_the_spec_but_not_with_the_traffic_split() -> None:
    spec = container("kubemind/core", "kubemind_predictors.simple", "--versions=1")
    assert revision_name("s", "predictor", spec) == revision_name("s", "predictor", {**spec, "canaryTrafficPercent": 20})
    changed = container("kubemind/core", "kubemind_predictors.simple", "--versions=2")
    assert revision_name("s", "predictor", spec) != revision_name("s", "predictor", changed)


@pytest.mark.parametrize(("uri", "message"), [
    ("s3://bucket/model", "storageUri s3://bucket/model is not supported locally"),
    ("models:/m/1", "no ClusterStorageContainer"),
])
def test_a_storage_uri_this_machine_cannot_read_is_named(uri: str, message: str) -> None:
    [service] = plan_services([isvc({**container("kubemind/core"), "storageUri": uri})])
    assert service.problem and message in service.problem and not service.components


def test_an_image_that_is_not_kubemind_runs_on_a_cluster_only() -> None:
    [service] = plan_services([isvc(container("docker.io/library/nginx:1.27", "nginx"))])
    assert service.problem == ("svc: predictor: image 'docker.io/library/nginx:1.27' is not a"
                               " kubemind image; it runs on a cluster only")


def repository_objects(*paths: str) -> list[ManifestObject]:
    return [ManifestObject(path, yaml.safe_load((REPO / path).read_text())) for path in paths]


def test_the_stock_triton_runtime_runs_the_local_tritonserver_without_the_pods_ports() -> None:
    objects = repository_objects("inferenceservices/base/embedder/inferenceservice.yaml",
                                 "inferenceservices/base/runtimes/tritonserver.yaml",
                                 "inferenceservices/base/runtimes/models-storage-initializer.yaml")
    [service] = plan_services(objects)
    assert service.problem is None
    plan = service.components["predictor"]
    assert plan.module == "kubemind_predictors.triton.stock_server"
    # `tritonserver` is the program, not an arg; its ports are the ones the runner chooses.
    assert plan.args == ("--model-store=/mnt/models", "--allow-grpc=true", "--allow-http=true")
    assert plan.storage_uri == "models:/minilm/2"


def test_a_triton_image_running_another_program_runs_on_a_cluster_only() -> None:
    triton = container("nvcr.io/nvidia/tritonserver:25.10-py3", "-c", "tritonserver --http-port 8080")
    triton["containers"][0]["command"] = ["/bin/sh"]
    [service] = plan_services([isvc(triton)])
    assert service.problem == ("svc: predictor: image 'nvcr.io/nvidia/tritonserver:25.10-py3' runs '/bin/sh';"
                               " only tritonserver runs locally")


def test_the_stock_triton_server_binds_the_local_ports_and_keeps_the_containers_args(tmp_path: Path) -> None:
    install = TritonInstall(tmp_path)
    command = tritonserver_command(install, "127.0.0.1", 5001, 5002, 5003, ["--model-store=/models", "--strict-readiness=true"])
    assert command[:3] == [str(install.binary), "--model-store=/models", "--strict-readiness=true"]
    assert f"--backend-directory={install.backend_dir}" in command
    assert {"--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--http-port=5001", "--grpc-port=5002",
            "--metrics-port=5003"} <= set(command)
    own = tritonserver_command(install, "127.0.0.1", 5001, 5002, 5003, ["--backend-directory=/opt/backends"])
    assert [arg for arg in own if arg.startswith("--backend-directory")] == ["--backend-directory=/opt/backends"]


def test_the_stock_triton_server_without_a_tritonserver_says_how_to_install_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = stock_server_main(["--host", "127.0.0.1", "--http_port", "5001", "--grpc_port", "5002",
                              "--model-store=/models"], install=TritonInstall(tmp_path))
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "tritonserver not found at" in err and "run `make install`" in err


def test_local_paths_are_used_in_place(tmp_path: Path) -> None:
    assert local_model_dir(f"file://{tmp_path}", None) == tmp_path
    assert local_model_dir(str(tmp_path), None) == tmp_path
    with pytest.raises(NotRunnableLocally, match="does not exist"):
        local_model_dir(str(tmp_path / "missing"), None)


def test_the_local_overlay_runs_the_simple_predictor_and_stock_tritons_embedder() -> None:
    from kubemind.local.up.specs import render_specs, validate_specs

    objects = validate_specs(render_specs([REPO / "inferenceservices" / "overlays" / "local"]))
    services = {service.name: service for service in plan_services(objects)}
    assert services["simple"].components["predictor"].module == "kubemind_predictors.simple"
    assert services["cv-classifier"].entry == "transformer"
    assert services["embedder"].components["predictor"].module == "kubemind_predictors.triton.stock_server"


def gateway_config(folder: Path) -> GatewayConfig:
    component = ComponentRoute("ns/svc/predictor", (
        RevisionRoute("svc-predictor-aaaa", 80, ((5001, 5002), (5003, 5004))),
        RevisionRoute("svc-predictor-bbbb", 20, ((5005, 5006),)),
    ), 6001, 6002)
    return GatewayConfig(7001, 7002, 3, (component,), (ServiceRoute("svc", "ns", "ns/svc/predictor"),), folder)


def test_the_gateway_config_splits_by_the_canary_percent_and_nginx_accepts_it(tmp_path: Path) -> None:
    text = render_config(gateway_config(tmp_path))
    assert "20% svc-predictor-bbbb;\n    * svc-predictor-aaaa;" in text
    assert "server 127.0.0.1:5003 max_fails=1" in text and "server 127.0.0.1:5006 max_fails=1" in text
    assert "location /serving/ns/svc/ {" in text and "server_name svc.ns.localhost" in text
    assert "listen 127.0.0.1:7002 http2 default_server;" in text
    assert_nginx_accepts(tmp_path, text)


def test_the_istio_local_rate_limit_becomes_nginx_limit_req(tmp_path: Path) -> None:
    from kubemind.manifests.rendering import parse_stream

    path = REPO / "istio" / "base" / "rate-limit.yaml"
    policy = gateway_policy(list(parse_stream(path.read_text(), str(path))))
    assert policy.rate_limit is not None
    assert (policy.rate_limit.requests_per_second, policy.rate_limit.burst) == (100, 200)
    config = gateway_config(tmp_path)
    text = render_config(GatewayConfig(config.http_port, config.grpc_port, 1, config.components, config.services,
                                       tmp_path, policy))
    assert "limit_req_zone $kubemind_bucket zone=kubemind_gateway:1m rate=100r/s;" in text
    assert text.count("limit_req zone=kubemind_gateway burst=200 nodelay;") == 3  # path, host, gRPC


def test_several_services_route_by_host_and_path_and_nginx_accepts_it(tmp_path: Path) -> None:
    components = tuple(
        ComponentRoute(f"ns/{name}/predictor", (RevisionRoute(f"{name}-predictor-aaaa", 100, ((port, port + 1),)),),
                       port + 2, port + 3)
        for name, port in (("one", 5100), ("two", 5200)))
    zero = ComponentRoute("ns/two/transformer", (RevisionRoute("two-transformer-cccc", 100, (), (5900, 5901)),), 5302,
                          5303)
    services = (ServiceRoute("one", "ns", "ns/one/predictor"), ServiceRoute("two", "ns", "ns/two/transformer"))
    text = render_config(GatewayConfig(7101, 7102, 1, (*components, zero), services, tmp_path))
    # Scaled to zero: REST and gRPC both wait in the activator.
    assert "server 127.0.0.1:5900;  # scaled to zero" in text and "server 127.0.0.1:5901;  # scaled to zero" in text
    # With two services a gRPC call must name one (:authority); an unknown one is NOT_FOUND.
    assert "add_header grpc-status 5 always;" in text
    assert_nginx_accepts(tmp_path, text)


def test_a_mirror_to_one_revision_copies_the_routes_requests_to_that_revisions_replicas(tmp_path: Path) -> None:
    # The release controller's shadow phase: the primary answers, a copy goes to the candidate.
    revisions = (RevisionRoute("one-predictor-aaaa", 100, ((5001, 5002),)),
                 RevisionRoute("one-predictor-bbbb", 0, ((5011, 5012),)))
    component = ComponentRoute("ns/one/predictor", revisions, 5003, 5004)
    route = HostRoute(("one.example.com",), "/", "ns/one/predictor", "VirtualService/ns/edge", None, 25.0,
                      "one-predictor-bbbb")
    text = render_config(GatewayConfig(7101, 7102, 1, (component,), (ServiceRoute("one", "ns", "ns/one/predictor"),),
                                       tmp_path, host_routes=(route,)))
    assert "    * one-predictor-aaaa;" in text  # live traffic: the primary alone
    assert "mirror /.kubemind/mirror/0;" in text and "25% 1;" in text
    assert "proxy_pass http://one-predictor-bbbb-http$request_uri;" in text
    assert "proxy_set_header Host $host-shadow;" in text
    assert_nginx_accepts(tmp_path, text)


def test_an_istio_gateway_with_an_https_server_adds_a_tls_listener_nginx_accepts(tmp_path: Path) -> None:
    gateway = yaml.safe_load((REPO / "istio" / "base" / "gateway.yaml").read_text())
    policy = gateway_policy([ManifestObject("gateway.yaml", gateway)])
    assert policy.tls is not None and policy.tls.min_protocol == "TLSv1.2"
    component = ComponentRoute("ns/one/predictor", (RevisionRoute("one-predictor-aaaa", 100, ((5001, 5002),)),),
                               5003, 5004)
    text = render_config(GatewayConfig(7101, 7102, 1, (component,), (ServiceRoute("one", "ns", "ns/one/predictor"),),
                                       tmp_path, policy, 7443, local_certificate(tmp_path / "tls")))
    assert "listen 127.0.0.1:7443 ssl default_server;" in text and text.count("listen 127.0.0.1:7443 ssl") == 2
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    assert_nginx_accepts(tmp_path, text)


def test_a_mounted_configmap_is_planned_with_its_files_and_a_missing_one_is_named() -> None:
    """The router reads its graph from a ConfigMap volume (base/cv-to-llm): `up` projects the
    rendered ConfigMap's files as the kubelet would, and refuses a mount of one not rendered."""
    predictor = container("kubemind/transformer-image", "--graph=/etc/graph/g.yaml")
    predictor["containers"][0]["command"] = ["/opt/kubemind/bin/python", "-m", "kubemind_transformers.router"]
    predictor["containers"][0]["volumeMounts"] = [{"name": "graph", "mountPath": "/etc/graph"}]
    predictor["volumes"] = [{"name": "graph", "configMap": {"name": "the-graph"}}]
    config_map = ManifestObject("test", {"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": "the-graph", "namespace": "ns"},
                                         "data": {"g.yaml": "kind: InferenceGraph\n", "other": "x"}})
    [service] = plan_services([isvc(predictor), config_map])
    plan = service.components["predictor"]
    assert plan.module == "kubemind_transformers.router"
    assert plan.config_volumes == (("/etc/graph", (("g.yaml", "kind: InferenceGraph\n"), ("other", "x"))),)

    predictor["volumes"][0]["configMap"]["items"] = [{"key": "g.yaml", "path": "graph.yaml"}]
    [service] = plan_services([isvc(predictor), config_map])
    assert service.components["predictor"].config_volumes == (("/etc/graph", (("graph.yaml", "kind: InferenceGraph\n"),)),)

    [service] = plan_services([isvc(predictor)])
    assert service.problem is not None and "ConfigMap ns/the-graph" in service.problem


def test_an_unchanged_gateway_configuration_does_not_reload_nginx(tmp_path: Path) -> None:
    """A rollout re-applies the specs on every annotation write; a reload for nothing would close
    idle keep-alive connections under the clients. A real change still reloads."""
    import dataclasses

    from kubemind.local.up.gateway import Nginx, _children
    from kubemind.processes import free_port

    gateway = Nginx(tmp_path)
    config = GatewayConfig(free_port(), free_port(), 1, folder=tmp_path)
    try:
        gateway.apply(config)
        assert gateway.process is not None
        workers = _children(gateway.process.pid)
        gateway.apply(dataclasses.replace(config, generation=2))
        assert _children(gateway.process.pid) == workers
        route = ComponentRoute("ns/svc/predictor", (RevisionRoute("svc-predictor-1", 100, ((free_port(), free_port()),)),),
                               free_port(), free_port())
        gateway.apply(dataclasses.replace(config, generation=3, components=(route,)))
        assert _children(gateway.process.pid).isdisjoint(workers)
    finally:
        gateway.stop()
