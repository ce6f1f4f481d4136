"""Gateway policies read from the Istio objects `kubemind up --istio PATH` is given.

TLS: an Istio Gateway server with `protocol: HTTPS` makes the local gateway answer HTTPS too
(on its own port, with a certificate generated for localhost; the Gateway's credentialName
Secret exists only on a cluster), at the Gateway's minProtocolVersion.

The local rate limit: an EnvoyFilter inserting `envoy.filters.http.local_ratelimit` at
the GATEWAY context (istio/base/rate-limit.yaml) becomes nginx's `limit_req` on the ingress
listeners. Envoy's token bucket (max_tokens, refilled by tokens_per_fill every fill_interval)
is nginx's leaky bucket at rate = tokens_per_fill / fill_interval with burst = max_tokens and
nodelay: up to max_tokens at once, then the refill rate; the rest is 429, as Envoy answers.
The bucket is per gateway, as Envoy's is per gateway pod.

VirtualServices: their hosts become host routes of the local gateway (REST), each http route
with no match or a `uri.prefix` match to the service its destination names: the destination
host itself (`NAME`, `NAME.NAMESPACE`, `NAME.NAMESPACE.svc.cluster.local`) or, when it is
Knative's local gateway, the route's `rewrite.authority` (how istio/base routes through
Knative). `mirror` + `mirrorPercentage` (default 100 %) make the gateway send a copy of the
route's requests to the mirror host's service, its answers dropped, Host `HOST-shadow` as
Envoy sends it. A mirror host that names no service `up` runs is reported and not mirrored.

JWT: RequestAuthentication and ALLOW AuthorizationPolicies that select the ingress gateway
(`istio: ingressgateway`, or no selector in istio-system) are checked by jwt.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kubemind.manifests.istio_routes import route_destination
from kubemind.manifests.problems import ManifestObject

LOCAL_RATE_LIMIT = "envoy.filters.http.local_ratelimit"


@dataclass(frozen=True)
class RateLimit:
    requests_per_second: float
    burst: int
    source: str
    """The object it comes from (`EnvoyFilter/NAME`), for the generated config's comment."""


@dataclass(frozen=True)
class Tls:
    min_protocol: str
    """nginx's name for the Gateway's minProtocolVersion (TLSv1.2, TLSv1.3)."""
    source: str


@dataclass(frozen=True)
class VirtualRoute:
    """One http route of a VirtualService, as the local gateway serves it."""

    hosts: tuple[str, ...]
    prefix: str
    destination: str
    """The host naming the service the route goes to (see service_name)."""
    namespace: str
    """The VirtualService's namespace: short host names are relative to it."""
    source: str
    mirror: str | None = None
    mirror_percent: float = 100.0


@dataclass(frozen=True)
class JwtRule:
    """One jwtRules entry of a RequestAuthentication."""

    issuer: str
    audiences: tuple[str, ...]
    jwks: str | None
    """Istio's inline JWKS (a JSON string), when the rule has one instead of a jwksUri."""
    jwks_uri: str | None
    source: str


@dataclass(frozen=True)
class AllowRule:
    """One rule of an ALLOW AuthorizationPolicy: it matches a request whose principal matches
    one of `principals` (any request, without) to one of `hosts` (any host, without)."""

    principals: tuple[str, ...] | None
    hosts: tuple[str, ...] | None


@dataclass(frozen=True)
class AllowPolicy:
    rules: tuple[AllowRule, ...]
    source: str


@dataclass(frozen=True)
class GatewayPolicy:
    rate_limit: RateLimit | None = None
    tls: Tls | None = None
    routes: tuple[VirtualRoute, ...] = ()
    jwt_rules: tuple[JwtRule, ...] = ()
    allow_policies: tuple[AllowPolicy, ...] = ()

    @property
    def checks_requests(self) -> bool:
        """Some requests need the JWT check (jwt.py)."""
        return bool(self.jwt_rules or self.allow_policies)


# Istio's TLS versions -> nginx's ssl_protocols names (TLS_AUTO: Envoy's default, 1.2).
TLS_VERSIONS = {"TLSV1_2": "TLSv1.2", "TLSV1_3": "TLSv1.3", "TLS_AUTO": "TLSv1.2"}


def gateway_policy(objects: list[ManifestObject]) -> GatewayPolicy:
    limits = [limit for obj in objects if obj.kind == "EnvoyFilter" for limit in _rate_limits(obj)]
    tls = next((tls for obj in objects if obj.kind == "Gateway" and obj.group == "networking.istio.io"
                for tls in _https(obj)), None)
    # Several filters in a row: the strictest one decides.
    return GatewayPolicy(
        min(limits, key=lambda limit: limit.requests_per_second) if limits else None, tls,
        routes=tuple(route for obj in objects if _is_istio(obj, "VirtualService") for route in _routes(obj)),
        jwt_rules=tuple(rule for obj in objects if _is_istio(obj, "RequestAuthentication") and _at_gateway(obj)
                        for rule in _jwt_rules(obj)),
        allow_policies=tuple(_allow_policy(obj) for obj in objects if _is_istio(obj, "AuthorizationPolicy")
                             and _at_gateway(obj) and obj.body.get("spec", {}).get("action", "ALLOW") == "ALLOW"),
    )


def _is_istio(obj: ManifestObject, kind: str) -> bool:
    return obj.kind == kind and obj.group.endswith("istio.io")


def _at_gateway(obj: ManifestObject) -> bool:
    """The policy selects the ingress gateway (or, in the root namespace, every workload)."""
    selector = obj.body.get("spec", {}).get("selector")
    if not selector:
        return obj.body.get("metadata", {}).get("namespace") == "istio-system"
    return (selector.get("matchLabels") or {}).get("istio") == "ingressgateway"


def _routes(obj: ManifestObject) -> list[VirtualRoute]:
    spec = obj.body.get("spec", {})
    namespace = str(obj.body.get("metadata", {}).get("namespace", "default"))
    hosts = tuple(str(host) for host in spec.get("hosts") or [])
    found = []
    for http in spec.get("http") or []:
        matches = http.get("match") or [{}]
        prefixes = [str((match.get("uri") or {}).get("prefix", "/")) for match in matches
                    if set(match) <= {"uri"} and set(match.get("uri") or {"prefix": "/"}) == {"prefix"}]
        if not prefixes or not http.get("route"):
            continue  # header, exact or regex matches and redirects: not routed locally
        destination = route_destination(http)
        mirror = (http.get("mirror") or {}).get("host")
        percent = float((http.get("mirrorPercentage") or {}).get("value", 100.0))
        for prefix in prefixes:
            found.append(VirtualRoute(hosts, prefix, destination, namespace, f"VirtualService/{namespace}/{obj.name}",
                                      str(mirror) if mirror else None, percent))
    return found


def _jwt_rules(obj: ManifestObject) -> list[JwtRule]:
    found = []
    for rule in obj.body.get("spec", {}).get("jwtRules") or []:
        found.append(JwtRule(str(rule.get("issuer", "")), tuple(str(a) for a in rule.get("audiences") or []),
                             rule.get("jwks"), rule.get("jwksUri"), obj.label))
    return found


def _allow_policy(obj: ManifestObject) -> AllowPolicy:
    rules = []
    for rule in obj.body.get("spec", {}).get("rules") or []:
        principals = [str(p) for source in rule.get("from") or []
                      for p in (source.get("source") or {}).get("requestPrincipals") or []]
        hosts = [str(h) for target in rule.get("to") or [] for h in (target.get("operation") or {}).get("hosts") or []]
        rules.append(AllowRule(tuple(principals) if rule.get("from") else None,
                               tuple(hosts) if rule.get("to") else None))
    return AllowPolicy(tuple(rules), obj.label)


def istio_match(pattern: str, value: str) -> bool:
    """Istio's string match for hosts and principals: exact, `*`, `prefix*` or `*suffix`
    (hosts case-insensitively: the caller lowers them)."""
    if pattern == "*":
        return bool(value)
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def _https(obj: ManifestObject) -> list[Tls]:
    found = []
    for server in obj.body.get("spec", {}).get("servers") or []:
        if str((server.get("port") or {}).get("protocol", "")).upper() == "HTTPS":
            version = str((server.get("tls") or {}).get("minProtocolVersion", "TLS_AUTO")).upper()
            found.append(Tls(TLS_VERSIONS.get(version, "TLSv1.2"), obj.label))
    return found


def _rate_limits(obj: ManifestObject) -> list[RateLimit]:
    found = []
    for patch in obj.body.get("spec", {}).get("configPatches") or []:
        value = (patch.get("patch") or {}).get("value") or {}
        if value.get("name") != LOCAL_RATE_LIMIT or (patch.get("match") or {}).get("context") != "GATEWAY":
            continue
        config: dict[str, Any] = value.get("typed_config") or {}
        bucket = (config.get("value") or config).get("token_bucket") or {}
        if not bucket:
            continue
        seconds = _seconds(str(bucket.get("fill_interval", "1s")))
        tokens = int(bucket.get("tokens_per_fill", 1))
        found.append(RateLimit(tokens / seconds, int(bucket.get("max_tokens", tokens)), obj.label))
    return found


def _seconds(duration: str) -> float:
    """A protobuf Duration as YAML writes it: `1s`, `0.5s`, `100ms`."""
    match = re.fullmatch(r"([\d.]+)(ms|s)", duration.strip())
    if not match:
        raise ValueError(f"fill_interval {duration!r} is not a duration like 1s or 100ms")
    value = float(match.group(1))
    return value / 1000 if match.group(2) == "ms" else value
