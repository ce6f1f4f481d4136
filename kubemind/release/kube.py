"""The only module that imports the official `kubernetes` client: InferenceServices,
RolloutPolicies and VirtualServices (the shadow phase's mirror), read and merge-patched the same
way against `kubemind up`'s API (its kubeconfig) and a cluster's API server (a kubeconfig, or
the pod's service account)."""

from __future__ import annotations

from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from kubemind.release.errors import KubernetesApiError
from kubemind.release.policy import GROUP as POLICY_GROUP
from kubemind.release.policy import PLURAL as POLICY_PLURAL
from kubemind.release.policy import VERSION as POLICY_VERSION

ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
VIRTUAL_SERVICE = ("networking.istio.io", "v1", "virtualservices")


class KubeApi:
    """InferenceServices and RolloutPolicies of the API server a kubeconfig (or the pod) names."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, timeout: float = 10.0):
        self.timeout = timeout
        self.user = "unknown"
        try:
            if kubeconfig is None and _in_cluster():
                config.load_incluster_config()
                self.user = "serviceaccount"
                self.api_client = client.ApiClient()
            else:
                configuration = client.Configuration()
                config.load_kube_config(config_file=kubeconfig, context=context,
                                        client_configuration=configuration)
                contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
                chosen = next((c for c in contexts if c["name"] == context), active) if context else active
                self.user = str((chosen or {}).get("context", {}).get("user") or "unknown")
                self.api_client = client.ApiClient(configuration)
        except (config.ConfigException, OSError) as exc:
            raise KubernetesApiError(f"no Kubernetes API to talk to: {exc}") from None
        self.custom = client.CustomObjectsApi(self.api_client)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = fn(*args, _request_timeout=self.timeout, **kwargs)
            return result
        except ApiException as exc:
            raise KubernetesApiError(f"{what}: the API server answered {exc.status} {exc.reason}: "
                                     f"{_message(exc)}", int(exc.status or 0)) from None
        except (Urllib3Error, OSError) as exc:
            raise KubernetesApiError(f"{what}: the API server cannot be reached: {exc}") from None

    def get_isvc(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(f"get InferenceService {namespace}/{name}", self.custom.get_namespaced_custom_object,
                          *ISVC[:2], namespace, ISVC[2], name)

    def list_isvcs(self, namespace: str) -> list[dict[str, Any]]:
        listed = self._call(f"list InferenceServices in {namespace}", self.custom.list_namespaced_custom_object,
                            *ISVC[:2], namespace, ISVC[2])
        return list(listed.get("items") or [])

    def patch_isvc(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386: None removes a field), what the client sends for a dict."""
        return self._call(f"patch InferenceService {namespace}/{name}", self.custom.patch_namespaced_custom_object,
                          *ISVC[:2], namespace, ISVC[2], name, patch)

    def get_policy(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(f"get RolloutPolicy {namespace}/{name}", self.custom.get_namespaced_custom_object,
                          POLICY_GROUP, POLICY_VERSION, namespace, POLICY_PLURAL, name)

    def list_virtual_services(self, namespace: str) -> list[dict[str, Any]]:
        listed = self._call(f"list VirtualServices in {namespace}", self.custom.list_namespaced_custom_object,
                            *VIRTUAL_SERVICE[:2], namespace, VIRTUAL_SERVICE[2])
        return list(listed.get("items") or [])

    def patch_virtual_service(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._call(f"patch VirtualService {namespace}/{name}", self.custom.patch_namespaced_custom_object,
                          *VIRTUAL_SERVICE[:2], namespace, VIRTUAL_SERVICE[2], name, patch)

    def close(self) -> None:
        self.api_client.close()


def _in_cluster() -> bool:
    import os

    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token")


def _message(exc: ApiException) -> str:
    import json

    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.body)
    except ValueError:
        return str(exc.body)
