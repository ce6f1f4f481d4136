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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

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
class GatewayPolicy:
    rate_limit: RateLimit | None = None
    tls: Tls | None = None


# Istio's TLS versions -> nginx's ssl_protocols names (TLS_AUTO: Envoy's default, 1.2).
TLS_VERSIONS = {"TLSV1_2": "TLSv1.2", "TLSV1_3": "TLSv1.3", "TLS_AUTO": "TLSv1.2"}


def gateway_policy(objects: list[ManifestObject]) -> GatewayPolicy:
    limits = [limit for obj in objects if obj.kind == "EnvoyFilter" for limit in _rate_limits(obj)]
    tls = next((tls for obj in objects if obj.kind == "Gateway" and obj.group == "networking.istio.io"
                for tls in _https(obj)), None)
    # Several filters in a row: the strictest one decides.
    return GatewayPolicy(min(limits, key=lambda limit: limit.requests_per_second) if limits else None, tls)


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
