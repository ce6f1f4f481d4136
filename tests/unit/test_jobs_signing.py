"""Standard Webhooks signing and the `kubemind jobs verify-signature` helper."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path

import pytest

from kubemind.cli import main
from kubemind_workers.signing import SignatureMismatch, sign, signed_headers, verify

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_signature_is_hmac_sha256_over_id_timestamp_body() -> None:
    body = b'{"data": 1}'
    expected = hmac.new(base64.b64decode(SECRET[6:]), b"msg_1.1700000000." + body, hashlib.sha256).digest()

    assert sign(SECRET, "msg_1", 1700000000, body) == "v1," + base64.b64encode(expected).decode()


def test_verify_accepts_its_own_headers_and_refuses_tampering() -> None:
    body = b'{"ok": true}'
    headers = signed_headers(SECRET, "job-1", body)

    verify(SECRET, headers, body)
    with pytest.raises(SignatureMismatch):
        verify(SECRET, headers, body + b" ")
    with pytest.raises(SignatureMismatch, match="from now"):
        verify(SECRET, signed_headers(SECRET, "job-1", body, timestamp=int(time.time()) - 3600), body)
    with pytest.raises(SignatureMismatch, match="missing"):
        verify(SECRET, {"webhook-id": "x"}, body)


def test_cli_verify_signature(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(b'{"type": "job.succeeded"}')
    headers = signed_headers(SECRET, "job-2", body.read_bytes())
    args = ["jobs", "verify-signature", "--secret", SECRET, "--webhook-id", "job-2",
            "--webhook-timestamp", headers["webhook-timestamp"], "--body", str(body)]  # fmt: skip

    assert main([*args, "--webhook-signature", headers["webhook-signature"]]) == 0
    assert capsys.readouterr().out.strip() == "valid"
    assert main([*args, "--webhook-signature", "v1,AAAA"]) == 1
    assert "invalid" in capsys.readouterr().err
