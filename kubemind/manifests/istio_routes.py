"""Where an Istio VirtualService's HTTP route delivers, read the way both of its users need it:
the local gateway of `kubemind up` (which runs the route) and the release controller (which
adds a shadow mirror to the routes that reach an InferenceService).

istio/base's VirtualServices route through Knative's local gateway and name the service in
`rewrite.authority`; a route may also name the Service directly as its destination.
"""

from __future__ import annotations

from typing import Any

KNATIVE_LOCAL_GATEWAY = "knative-local-gateway.istio-system.svc.cluster.local"


def service_name(host: str, namespace: str) -> tuple[str, str]:
    """(namespace, name) of the Kubernetes Service a host names, relative to `namespace`."""
    for suffix in (".svc.cluster.local", ".svc"):
        host = host.removesuffix(suffix)
    name, _, host_namespace = host.partition(".")
    return (host_namespace or namespace), name


def route_destination(http: dict[str, Any]) -> str:
    """The host an HTTP route's traffic is for: its first destination, or the authority it is
    rewritten to when that destination is Knative's local gateway."""
    destinations = http.get("route") or []
    destination = str(((destinations[0] if destinations else {}).get("destination") or {}).get("host", ""))
    authority = (http.get("rewrite") or {}).get("authority")
    if destination == KNATIVE_LOCAL_GATEWAY and authority:
        return str(authority)
    return destination


def revision_host(revision: str, namespace: str) -> str:
    """The cluster host of one Knative revision: the Service Knative creates for it (port 80)."""
    return f"{revision}.{namespace}.svc.cluster.local"
