"""The local gateway's JWT checks (kubemind/local/up/jwt.py) against istio/base's policies, with
keys and tokens made here (cryptography + PyJWT, as an identity provider would sign them)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from kubemind.local.up.jwt import TokenChecker, decide
from kubemind.local.up.policy import GatewayPolicy, gateway_policy
from kubemind.manifests.problems import ManifestObject
from tests.jwt_tokens import ISSUER, JWKS_URI, jwks, signing_key, token

REPO = Path(__file__).resolve().parents[2]
HOST = "simple.models.kubemind.dev"


def istio_policy() -> GatewayPolicy:
    objects = [
        ManifestObject(name, body)
        for name in ("authn.yaml", "authz.yaml")
        for body in yaml.safe_load_all((REPO / "istio" / "base" / name).read_text())
    ]
    return gateway_policy(objects)


@pytest.fixture(scope="module")
def keys(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey, Path]:
    good, other = signing_key(), signing_key()
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(jwks(("k1", good)))
    return good, other, path


def check(
    policy: GatewayPolicy,
    jwks_path: Path,
    authorization: str | None,
    host: str = HOST,
    edge: bool = True,
) -> tuple[int, str]:
    return decide(
        policy,
        TokenChecker(policy.jwt_rules, {JWKS_URI: jwks_path}, report=lambda _: None),
        authorization,
        host,
        edge,
    )


def test_istio_base_policies_are_read_for_the_gateway_only() -> None:
    policy = istio_policy()
    assert [(r.issuer, r.audiences, r.jwks_uri) for r in policy.jwt_rules] == [
        (ISSUER, ("kubemind-models",), JWKS_URI)
    ]
    # require-jwt selects the ingress gateway; the predictor-to-transformer policy does not.
    assert [p.source for p in policy.allow_policies] == ["AuthorizationPolicy/require-jwt"]


def test_a_valid_token_passes_and_its_principal_is_issuer_slash_subject(keys: Any) -> None:
    good, _, path = keys
    status, why = check(istio_policy(), path, "Bearer " + token(good))
    assert status == 200 and "require-jwt" in why
    assert (
        TokenChecker(istio_policy().jwt_rules, {JWKS_URI: path}).principal(token(good))
        == f"{ISSUER}/alice"
    )


@pytest.mark.parametrize(
    ("case", "claims"),
    [
        ("expired", {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}),
        ("wrong audience", {"aud": "someone-else"}),
        ("wrong issuer", {"iss": "https://evil.example"}),
        ("not yet valid", {"nbf": int(time.time()) + 3600}),
    ],
)
def test_a_bad_token_is_401_on_every_route(keys: Any, case: str, claims: dict[str, Any]) -> None:
    good, _, path = keys
    bearer = "Bearer " + token(good, **claims)
    assert check(istio_policy(), path, bearer)[0] == 401, case
    assert (
        check(istio_policy(), path, bearer, host="simple.kubemind.localhost", edge=False)[0] == 401
    ), case


def test_a_token_signed_by_another_key_or_tampered_with_is_401(keys: Any) -> None:
    good, other, path = keys
    assert check(istio_policy(), path, "Bearer " + token(other))[0] == 401
    head, _, sig = token(good).split(".")
    forged = jwt.utils.base64url_encode(
        json.dumps(
            {"iss": ISSUER, "sub": "root", "aud": "kubemind-models", "exp": int(time.time()) + 600}
        ).encode()
    ).decode()
    assert check(istio_policy(), path, f"Bearer {head}.{forged}.{sig}")[0] == 401
    assert check(istio_policy(), path, "Bearer not-a-jwt")[0] == 401


def test_no_token_is_403_on_a_covered_host_and_passes_elsewhere(keys: Any) -> None:
    _, _, path = keys
    assert check(istio_policy(), path, None) == (
        403,
        "no AuthorizationPolicy rule matches (no token)",
    )
    assert (
        check(istio_policy(), path, "Basic YWxpY2U6cHc=")[0] == 403
    )  # not a bearer token: no principal
    # A local-only route: RequestAuthentication alone lets a request without a token through.
    assert check(istio_policy(), path, None, host="simple.kubemind.localhost", edge=False)[0] == 200


def test_without_a_local_jwks_every_token_fails(keys: Any) -> None:
    good, _, _ = keys
    policy = istio_policy()
    reports: list[str] = []
    checker = TokenChecker(policy.jwt_rules, {}, report=reports.append)
    assert decide(policy, checker, "Bearer " + token(good), HOST, True)[0] == 401
    assert "--jwks https://auth.kubemind.dev/.well-known/jwks.json=FILE" in reports[0]


def test_an_inline_jwks_needs_no_file(keys: Any) -> None:
    good, _, _ = keys
    authn = yaml.safe_load((REPO / "istio" / "base" / "authn.yaml").read_text())
    rule = authn["spec"]["jwtRules"][0]
    del rule["jwksUri"]
    rule["jwks"] = jwks(("k1", good))
    policy = gateway_policy([ManifestObject("inline", authn)])
    checker = TokenChecker(policy.jwt_rules, {})
    assert decide(policy, checker, "Bearer " + token(good), HOST, True)[0] == 200
