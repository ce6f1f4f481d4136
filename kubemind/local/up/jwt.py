"""JWT at the local gateway: Istio's RequestAuthentication and ALLOW AuthorizationPolicies.

How: nginx's `auth_request` asks this verifier, a threaded HTTP server inside `kubemind up` (as
the activator is), about each request before it is proxied; PyJWT (with `cryptography`, both
already there as kserve's dependencies) checks the token. Why not njs: Debian's
libnginx-mod-http-js is one more package, not installed on a stock machine, and njs 0.7's
WebCrypto would need JWK import and claim checks written in JavaScript; `auth_request` is built
into Debian's nginx and keeps the checks in one Python module the unit tests call directly.

What Istio does, and this does the same:
- A token is the `Authorization: Bearer TOKEN` header (Istio's default location; the
  `access_token` query parameter and custom `fromHeaders` are not read here). A request with a
  token that fails -- bad signature, unknown `kid`, expired (`exp`, with Envoy's 60 s clock
  skew), not yet valid (`nbf`), an issuer no jwtRule names, an audience not in the rule's
  `audiences` -- is answered 401 `Jwt verification fails`, on every route.
- A request without a token passes RequestAuthentication with no principal; an ALLOW
  AuthorizationPolicy then answers it 403 `RBAC: access denied` when none of its rules match.
  A valid token's principal is `ISSUER/SUBJECT`, matched against the rules' requestPrincipals.
- Health checks get no exception: the policy's hosts decide (istio/base/authz.yaml covers
  every path of `*.models.kubemind.dev`).
Where this differs: the AuthorizationPolicies are enforced on the VirtualService hosts only, the
hosts a cluster's gateway serves. Istio would deny every other host at that gateway too; the
local-only routes (`/serving/NAMESPACE/NAME`, `NAME.NAMESPACE.localhost`) stay open, with
RequestAuthentication's 401 for a bad token. Keys: RSA and EC (RS*, PS*, ES*). JWKS: a rule's
inline `jwks` (Istio's field), or for a `jwksUri` the local file `kubemind up --jwks URI=FILE`
maps it to; a rule with neither fails every token, as Istio does when it cannot fetch a JWKS.
The keys are read at start and whenever the RequestAuthentications change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import jwt

from kubemind.local.up.background_http import BackgroundHttpServer
from kubemind.local.up.policy import GatewayPolicy, JwtRule, istio_match

# Envoy jwt_authn's default clock skew for exp and nbf.
CLOCK_SKEW_SECONDS = 60
# Headers nginx sends with the check: the request's host, and whether an AuthorizationPolicy
# applies (a VirtualService host) or only RequestAuthentication (a local-only route).
HOST_HEADER = "x-kubemind-host"
EDGE_HEADER = "x-kubemind-edge"
REASON_HEADER = "x-kubemind-auth"
UNAUTHENTICATED = "Jwt verification fails"
DENIED = "RBAC: access denied"
# What Istio's JWKS keys may sign with (asymmetric only: a JWKS holds public keys).
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"]


class InvalidToken(Exception):
    """Why a token fails (logged; the client sees Istio's fixed 401 text)."""


@dataclass(frozen=True)
class Issuer:
    rule: JwtRule
    keys: tuple[jwt.PyJWK, ...]


def parse_jwks(text: str) -> list[jwt.PyJWK]:
    return list(jwt.PyJWKSet.from_json(text).keys)


class TokenChecker:
    """The RequestAuthentication rules, with their keys loaded."""

    def __init__(
        self,
        rules: tuple[JwtRule, ...],
        jwks_files: Mapping[str, Path],
        report: Callable[[str], None] = print,
    ):
        self.issuers: dict[str, Issuer] = {}
        for rule in rules:
            self.issuers[rule.issuer] = Issuer(rule, tuple(self._keys(rule, jwks_files, report)))

    @staticmethod
    def _keys(
        rule: JwtRule, jwks_files: Mapping[str, Path], report: Callable[[str], None]
    ) -> list[jwt.PyJWK]:
        try:
            if rule.jwks:
                return parse_jwks(rule.jwks)
            if rule.jwks_uri and rule.jwks_uri in jwks_files:
                return parse_jwks(jwks_files[rule.jwks_uri].read_text())
        except (OSError, ValueError, KeyError, jwt.PyJWTError) as exc:
            report(
                f"kubemind up: {rule.source}: its JWKS does not load ({exc}); every token of"
                f" {rule.issuer} fails"
            )
            return []
        report(
            f"kubemind up: {rule.source}: no local JWKS for {rule.jwks_uri or rule.issuer} (pass --jwks"
            f" {rule.jwks_uri}=FILE); every token of {rule.issuer} fails"
        )
        return []

    def principal(self, token: str) -> str:
        """ISSUER/SUBJECT of a valid token; InvalidToken otherwise."""
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed: {exc}") from None
        issuer = self.issuers.get(str(claims.get("iss")))
        if issuer is None:
            raise InvalidToken(f"issuer {claims.get('iss')!r} is not configured")
        keys = [key for key in issuer.keys if header.get("kid") in (None, key.key_id)]
        if not keys:
            raise InvalidToken(f"no key of {issuer.rule.issuer} has kid {header.get('kid')!r}")
        failures = []
        for key in keys:
            try:
                verified = jwt.decode(
                    token,
                    key.key,
                    algorithms=ALGORITHMS,
                    audience=list(issuer.rule.audiences) or None,
                    leeway=CLOCK_SKEW_SECONDS,
                    options={"verify_aud": bool(issuer.rule.audiences)},
                )
            except jwt.InvalidSignatureError as exc:  # the next key may have signed it
                failures.append(str(exc))
                continue
            except jwt.PyJWTError as exc:
                raise InvalidToken(str(exc)) from None
            return f"{verified['iss']}/{verified.get('sub', '')}"
        raise InvalidToken(
            f"signature does not verify with the keys of {issuer.rule.issuer}: {failures[0]}"
        )


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def decide(
    policy: GatewayPolicy, checker: TokenChecker, authorization: str | None, host: str, edge: bool
) -> tuple[int, str]:
    """(status, why): 200 to let the request through, 401 or 403 as Istio answers."""
    principal = None
    token = bearer_token(authorization)
    if token is not None:
        try:
            principal = checker.principal(token)
        except InvalidToken as exc:
            return 401, str(exc)
    if edge and policy.allow_policies:
        host = host.lower()  # nginx's $host: no port
        for allow in policy.allow_policies:
            for rule in allow.rules:
                if (
                    rule.principals is None
                    or (principal and any(istio_match(p, principal) for p in rule.principals))
                ) and (rule.hosts is None or any(istio_match(h.lower(), host) for h in rule.hosts)):
                    return 200, f"allowed by {allow.source}"
        return 403, "no AuthorizationPolicy rule matches" + ("" if principal else " (no token)")
    return 200, principal or "no token"


class Verifier:
    """The HTTP endpoint nginx's auth_request asks (GET with the request's headers): 200, 401 or
    403, the reason in x-kubemind-auth."""

    def __init__(
        self, policy: GatewayPolicy, jwks_files: Mapping[str, Path], report: Callable[[str], None]
    ):
        self.policy = policy
        self.report = report
        self.checker = TokenChecker(policy.jwt_rules, jwks_files, report)
        self._server = BackgroundHttpServer(self._handler(), "jwt-verifier").start()
        self.port = self._server.port

    def update(self, policy: GatewayPolicy, jwks_files: Mapping[str, Path]) -> None:
        """New policies (the Istio objects changed); the port stays, so nginx's config does."""
        if policy.jwt_rules != self.policy.jwt_rules:
            self.checker = TokenChecker(policy.jwt_rules, jwks_files, self.report)
        self.policy = policy

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        verifier = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: nginx reuses its connections to us

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                status, why = decide(
                    verifier.policy,
                    verifier.checker,
                    self.headers.get("authorization"),
                    self.headers.get(HOST_HEADER, ""),
                    self.headers.get(EDGE_HEADER) == "1",
                )
                self.send_response(status)
                self.send_header(REASON_HEADER, why.encode("ascii", "replace").decode())
                self.send_header("content-length", "0")
                self.end_headers()

        return Handler

    def stop(self) -> None:
        self._server.stop()
