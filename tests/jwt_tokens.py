"""Keys, JWKS documents and tokens as kubemind's identity provider would sign them (RS256), for
the tests of `kubemind up`'s RequestAuthentication checks: the unit tests of the decisions and the
component tests through the real nginx."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://auth.kubemind.dev"
JWKS_URI = "https://auth.kubemind.dev/.well-known/jwks.json"
"""istio/base/authn.yaml's issuer and jwksUri."""


def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks(*keys: tuple[str, rsa.RSAPrivateKey]) -> str:
    """A JWKS document of the public halves, each under its `kid`."""
    entries = [
        {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": "RS256", "use": "sig"}
        for kid, key in keys
    ]
    return json.dumps({"keys": entries})


def token(key: rsa.RSAPrivateKey, kid: str = "k1", **claims: Any) -> str:
    """A token for alice, valid for 10 minutes, with `claims` overriding (None drops a claim)."""
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "alice", "aud": "kubemind-models", "iat": now, "exp": now + 600, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="RS256", headers={"kid": kid})
