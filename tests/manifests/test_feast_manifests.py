"""The cluster's Feast pods (issue 11): the feature server, the rag transformer, the feast-apply Job
and the feast-materialize CronJob all read features/cluster/feature_store.yaml, take the variables
it names from the Secrets feast-registry and feast-online-store, and run command lines their
programs (feast 0.67's click CLI, kubemind's own) accept. Checked on the committed renderings of
every cluster environment; the local overlay reads the repository's own (SQLite) config."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manifests.conftest import ENVIRONMENTS, REPO

FEATURES = "/opt/kubemind/features"  # where the RAG image carries features/ (images/transformer-rag)
CLUSTER_CONFIG = f"{FEATURES}/cluster/feature_store.yaml"
SECRETS = {"FEAST_REGISTRY_PATH": {"name": "feast-registry", "key": "url"},
           "FEAST_ONLINE_STORE_CONNECTION_STRING": {"name": "feast-online-store", "key": "connection_string"}}  # fmt: skip


def rendered(env: str) -> list[dict[str, Any]]:
    return [o for o in yaml.safe_load_all((REPO / "inferenceservices" / "rendered" / f"{env}.yaml").read_text()) if o]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    if obj["kind"] == "InferenceService":
        return dict(obj["spec"]["transformer"])
    return dict(obj["spec"]["template"]["spec"])


def feast_pods(objects: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """{what: (pod spec, its one container)} of the four pods that read the Feast config."""
    pods = {}
    for kind, name in (("Deployment", "feast-feature-server"), ("InferenceService", "rag"), ("Job", "feast-apply"),
                       ("CronJob", "feast-materialize")):  # fmt: skip
        spec = pod_spec(find(objects, kind, name))
        (container,) = spec["containers"]
        pods[f"{kind}/{name}"] = (spec, container)
    return pods


def secret_env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container.get("env") or [] if "valueFrom" in e}


def config_variables(path: Path) -> set[str]:
    """The ${VAR}s in the config's values (what Feast expands when it loads the file)."""
    def strings(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        return [value] if isinstance(value, str) else []

    return set(re.findall(r"\$\{(\w+)\}", " ".join(strings(yaml.safe_load(path.read_text())))))


def feature_store_yaml(what: str, container: dict[str, Any]) -> tuple[str, str]:
    """(repository folder, config file) the container's command line names, parsed the way its
    program parses it: feast's click group, kubemind's argparse, RagSettings."""
    if what.startswith("Deployment/"):
        from feast.cli.cli import cli

        command = container["command"]
        assert command[0] == "/opt/kubemind/bin/feast"
        context = cli.make_context("feast", list(command[1:]))  # feast's options come before its command
        with warnings.catch_warnings():  # click 8.2+ warns of protected_args, which still holds the command
            warnings.simplefilter("ignore", DeprecationWarning)
            name, *rest = [*context.protected_args, *context.args]
        assert name == "serve"
        serve = cli.get_command(context, name)
        assert serve is not None
        serve.make_context(name, rest, parent=context)  # and its own options parse
        return str(context.params["chdir"]), str(context.params["feature_store_yaml"])
    if what.startswith("InferenceService/"):
        from kubemind.settings import parse_settings
        from kubemind_transformers.rag.settings import RagSettings

        settings = parse_settings(RagSettings, list(container["args"]), prog="rag")
        return settings.feature_repo, settings.feature_store_yaml
    from kubemind.cli import build_parser

    command = container["command"]
    assert command[0] == "/opt/kubemind/bin/kubemind"
    args = build_parser(command[1:]).parse_args(command[1:])
    assert (args.command, args.features_command) == ("features", "apply" if what.startswith("Job/") else "materialize")
    return str(args.repo), str(args.config)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_feast_pod_reads_the_cluster_config_with_both_variables_from_the_secrets(env: str) -> None:
    objects = rendered(env)
    variables = config_variables(REPO / "features" / "cluster" / "feature_store.yaml")
    assert variables == set(SECRETS)  # what the config needs is what the pods are given
    for what, (_spec, container) in feast_pods(objects).items():
        assert feature_store_yaml(what, container) == (FEATURES, CLUSTER_CONFIG), what
        assert {k: secret_env(container).get(k) for k in SECRETS} == SECRETS, what
    # The online store's Secret is rendered with its key; the registry's holds a password and
    # is the operator's (external-objects.yaml).
    assert "connection_string" in find(objects, "Secret", "feast-online-store")["stringData"]
    assert not [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "feast-registry"]
    external = yaml.safe_load((REPO / "external-objects.yaml").read_text())
    assert {"kind": "Secret", "namespace": "kubemind", "name": "feast-registry"}.items() <= next(
        e for e in external if e["name"] == "feast-registry").items()


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_feast_pods_run_as_nobody_on_a_read_only_root_without_an_api_token(env: str) -> None:
    for what, (spec, container) in feast_pods(rendered(env)).items():
        if what.startswith("InferenceService/"):
            continue  # KServe's transformer pod: as every InferenceService of the repository
        security = container["securityContext"]
        assert security["runAsNonRoot"] and security["runAsUser"] != 0 and security["readOnlyRootFilesystem"], what
        assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}, what
        assert spec["serviceAccountName"] == "feast" and spec["automountServiceAccountToken"] is False, what
        # Feast, gunicorn and matplotlib write under $HOME: a writable emptyDir there.
        home = next(e["value"] for e in container["env"] if e["name"] == "HOME")
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert home in mounts and {"name": mounts[home], "emptyDir": {}} in spec["volumes"], what
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], what


def test_the_materialize_cronjob_never_overlaps_and_the_apply_job_is_removed_once_done() -> None:
    objects = rendered("prod")
    cron = find(objects, "CronJob", "feast-materialize")["spec"]
    assert cron["schedule"] == "17 * * * *" and cron["concurrencyPolicy"] == "Forbid"
    job = find(objects, "Job", "feast-apply")["spec"]
    assert job["ttlSecondsAfterFinished"] > 0 and job["backoffLimit"] > 0  # rerun on the next rollout
    for template in (job["template"], cron["jobTemplate"]["spec"]["template"]):
        # Istio injects its sidecar in the namespace; as a native sidecar it lets the Job complete.
        assert template["metadata"]["annotations"]["sidecar.istio.io/nativeSidecar"] == "true"


def test_the_local_overlay_reads_the_repositorys_own_config() -> None:
    """`kubemind up` has no Secrets: its rag transformer reads features/feature_store.yaml (SQLite)."""
    _, container = feast_pods(rendered("local"))["InferenceService/rag"]
    repo, config = feature_store_yaml("InferenceService/rag", container)
    assert (repo, config) == (FEATURES, f"{FEATURES}/feature_store.yaml")
    assert config_variables(REPO / "features" / "feature_store.yaml") == set()
