"""Standard Webhooks signatures (https://www.standardwebhooks.com): the sender signs
`{webhook-id}.{webhook-timestamp}.{body}` with HMAC-SHA256 and sends `webhook-signature:
v1,<base64>`; a receiver recomputes it and compares in constant time.

Receivers without kubemind do the same in a few lines:

    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    ok = any(hmac.compare_digest(expected, s.split(",", 1)[1])
             for s in headers["webhook-signature"].split() if s.startswith("v1,"))
    # and refuse timestamps more than five minutes from now (replays)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
TOLERANCE_SECONDS = 300


class SignatureMismatch(ValueError):
    """The headers do not prove the body came from the holder of the secret."""


def secret_key(secret: str) -> bytes:
    """The HMAC key: `whsec_<base64>` decodes to its bytes; anything else is used as UTF-8."""
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX) :])
    return secret.encode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, webhook_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None, tolerance: int = TOLERANCE_SECONDS
) -> None:
    """Raise SignatureMismatch unless the headers sign `body` with `secret`, recently."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        webhook_id, timestamp_text, signatures = (
            lowered["webhook-id"], lowered["webhook-timestamp"], lowered["webhook-signature"]
        )  # fmt: skip
    except KeyError as missing:
        raise SignatureMismatch(f"header {missing.args[0]} is missing") from None
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        raise SignatureMismatch(f"webhook-timestamp {timestamp_text!r} is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureMismatch(f"webhook-timestamp {timestamp} is more than {tolerance} s from now")
    expected = sign(secret, webhook_id, timestamp, body).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(expected, value):
            return
    raise SignatureMismatch("no v1 signature matches")
