"""The local gateway's TLS certificate: self-signed for localhost, made once with Debian's openssl.

On a cluster the certificate is the Gateway's credentialName Secret; locally there is none, so
`kubemind up` makes one for `localhost`, `*.localhost` and 127.0.0.1 and keeps it in its folder
(clients verify against the certificate file itself, which `up` prints).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from kubemind.local.up.gateway import GatewayError

SUBJECT_ALT_NAMES = "DNS:localhost,DNS:*.localhost,IP:127.0.0.1"


def local_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files in `folder`, made on the first call."""
    cert, key = folder / "tls.crt", folder / "tls.key"
    if cert.is_file() and key.is_file():
        return cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        raise GatewayError("openssl not found: it makes the gateway's local TLS certificate (Debian's openssl"
                           " package, requirements/apt.txt)")
    folder.mkdir(parents=True, exist_ok=True)
    made = subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
                           "-subj", "/CN=localhost", "-addext", f"subjectAltName={SUBJECT_ALT_NAMES}",
                           "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        raise GatewayError(f"openssl could not make the local TLS certificate: {made.stderr.strip()}")
    key.chmod(0o600)
    return cert, key
