"""`kubemind up --istio`: VirtualService mirrors and JWT (RequestAuthentication +
AuthorizationPolicy) through the real nginx, in front of two `simple` services.

`simple` (version 1) is the primary; `shadow` serves the same model as version 2, so an answer
names who gave it. One `up` serves every test (start-up is the slow part).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.component.up_fixtures import (
    REPO,
    Up,
    simple_service,
    virtual_service,
    write_services_overlay,
)
from tests.jwt_tokens import JWKS_URI, jwks, signing_key, token

# Every host is one istio/base/authz.yaml's require-jwt covers (`*.models.kubemind.dev`): as on
# Istio, an ALLOW policy at the gateway refuses what none of its rules match.
MIRRORED = "simple-mirrored.models.kubemind.dev"
HALF_MIRRORED = "simple-half-mirrored.models.kubemind.dev"
EDGE = "simple.models.kubemind.dev"
INFER = {
    "inputs": [
        {"name": name, "shape": [1, 16], "datatype": "INT32", "data": list(range(16))}
        for name in ("INPUT0", "INPUT1")
    ]
}


class Gateway:
    def __init__(self, up: Up, key: rsa.RSAPrivateKey):
        self.up = up
        self.key = key
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{up.state()['gateway']['http_port']}", timeout=30
        )

    @property
    def bearer(self) -> str:
        return "Bearer " + token(self.key)

    def infer(self, host: str, authorization: str | None = None) -> httpx.Response:
        headers = {"host": host, **({"authorization": authorization} if authorization else {})}
        return self.client.post("/v2/models/simple/infer", json=INFER, headers=headers)

    def inferences(self, service: str) -> float:
        """Inference requests `service`'s replica answered so far (its own /metrics)."""
        component = next(s for s in self.up.state()["services"] if s["name"] == service)[
            "components"
        ][0]
        port = component["revisions"][0]["ports"][0][0]
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("kubemind_requests_total{") and 'endpoint="infer"' in line
        )

    def settled_inferences(self, service: str, at_least: float = 0, timeout: float = 30) -> float:
        """The count once it stops moving: mirrored copies may land after the client's answer."""
        deadline = time.monotonic() + timeout
        last = self.inferences(service)
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.inferences(service)
            if now == last and now >= at_least:
                return now
            last = now
        return last


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("istio")
    overlay = write_services_overlay(
        folder / "overlay",
        simple_service(min_replicas=1),
        simple_service("shadow", versions="2", min_replicas=1, model_name="simple"),
    )
    (folder / "virtualservices.yaml").write_text(
        yaml.safe_dump_all(
            [
                virtual_service("simple-mirrored", MIRRORED, mirror="shadow", mirror_percent=100),
                virtual_service("simple-half-mirrored", HALF_MIRRORED, mirror="shadow", mirror_percent=50),
                virtual_service("simple-edge", EDGE),
            ]
        )
    )
    key = signing_key()
    (folder / "jwks.json").write_text(jwks(("k1", key)))
    up = Up(
        overlay,
        folder / "home",
        "--istio",
        str(folder / "virtualservices.yaml"),
        "--istio",
        str(REPO / "istio" / "base" / "authn.yaml"),
        "--istio",
        str(REPO / "istio" / "base" / "authz.yaml"),
        "--jwks",
        f"{JWKS_URI}={folder / 'jwks.json'}",
    )
    try:
        up.wait_ready()
        yield Gateway(up, key)
    finally:
        up.stop()


def test_the_shadow_gets_a_copy_of_every_mirrored_request_and_the_client_only_the_primarys_answers(
    gateway: Gateway,
) -> None:
    shadow, primary = gateway.inferences("shadow"), gateway.inferences("simple")
    # A request the policy refuses is not mirrored either (Envoy's RBAC filter runs before the router).
    assert [gateway.infer(MIRRORED).status_code for _ in range(5)] == [403] * 5
    bearer = gateway.bearer
    for _ in range(40):
        answer = gateway.infer(MIRRORED, bearer)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == "1"  # the shadow would say 2
        assert answer.headers["x-kubemind-revision"].startswith("simple-predictor-")
        assert answer.json()["outputs"][0]["data"][3] == 6
    assert gateway.settled_inferences("shadow", shadow + 40) == shadow + 40
    assert gateway.inferences("simple") == primary + 40


def test_mirror_percentage_sends_that_share_of_the_requests_to_the_shadow(gateway: Gateway) -> None:
    shadow, bearer = gateway.inferences("shadow"), gateway.bearer
    for _ in range(200):
        answer = gateway.infer(HALF_MIRRORED, bearer)
        assert answer.status_code == 200 and answer.json()["model_version"] == "1", answer.text
    copies = gateway.settled_inferences("shadow") - shadow
    # Binomial(200, 0.5): mean 100, sd 7.1; 4.5 sd either side fails a correct split 1 in 100,000.
    assert 68 <= copies <= 132, copies


def test_a_valid_jwt_passes_and_no_token_is_403_as_istio_answers(gateway: Gateway) -> None:
    valid = gateway.infer(EDGE, gateway.bearer)
    assert valid.status_code == 200 and valid.json()["model_version"] == "1", valid.text
    missing = gateway.infer(EDGE)
    assert missing.status_code == 403 and missing.text.strip() == "RBAC: access denied"
    # The policy covers every path of the host: health checks through the gateway too.
    assert gateway.client.get("/v2/health/ready", headers={"host": EDGE}).status_code == 403
    # The local-only routes are not the cluster gateway's hosts: open without a token.
    assert (
        gateway.client.post(
            "/serving/kubemind/simple/v2/models/simple/infer", json=INFER
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("case", "claims"),
    [
        ("expired", {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}),
        ("wrong audience", {"aud": "someone-else"}),
        ("wrong issuer", {"iss": "https://evil.example"}),
    ],
)
def test_a_bad_jwt_is_401(gateway: Gateway, case: str, claims: dict[str, Any]) -> None:
    answer = gateway.infer(EDGE, "Bearer " + token(gateway.key, **claims))
    assert answer.status_code == 401 and answer.text.strip() == "Jwt verification fails", (
        case,
        answer.text,
    )
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    # RequestAuthentication applies on every route: a bad token is refused on the local ones too.
    local = gateway.client.post(
        "/serving/kubemind/simple/v2/models/simple/infer",
        json=INFER,
        headers={"authorization": "Bearer " + token(gateway.key, **claims)},
    )
    assert local.status_code == 401, case


def test_a_jwt_signed_by_another_key_is_401(gateway: Gateway) -> None:
    answer = gateway.infer(EDGE, "Bearer " + token(signing_key()))
    assert answer.status_code == 401 and answer.text.strip() == "Jwt verification fails"
