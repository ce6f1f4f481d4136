"""`kubemind jobs verify-signature`: check a received webhook the way a receiver should.

    kubemind jobs verify-signature --secret whsec_... --webhook-id ID --webhook-timestamp TS \\
        --webhook-signature 'v1,...' --body body.json        # or --body - for stdin

Exit status 0 when the signature is valid and recent, 1 (with the reason) when not.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from kubemind_workers.signing import TOLERANCE_SECONDS, SignatureMismatch, verify

SECRET_ENV = "KUBEMIND_WEBHOOK_SECRET"


def register(subparsers: Any, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description="Async jobs tools.")
    commands = parser.add_subparsers(dest="jobs_command", metavar="COMMAND", required=True)
    check = commands.add_parser(
        "verify-signature",
        help="verify a webhook's Standard Webhooks signature",
        description="Verify webhook-signature over webhook-id.webhook-timestamp.body with the shared secret.",
    )
    check.add_argument("--secret", default=os.environ.get(SECRET_ENV), help=f"whsec_... (default: ${SECRET_ENV})")
    check.add_argument("--webhook-id", required=True)
    check.add_argument("--webhook-timestamp", required=True)
    check.add_argument("--webhook-signature", required=True, help="one or more space-separated v1,<base64>")
    check.add_argument("--body", required=True, help="file holding the exact request body, or - for stdin")
    check.add_argument("--tolerance", type=int, default=TOLERANCE_SECONDS, help="seconds a timestamp may be off")
    check.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.secret:
        print(f"verify-signature: no secret (--secret or ${SECRET_ENV})", file=sys.stderr)
        return 2
    body = sys.stdin.buffer.read() if args.body == "-" else open(args.body, "rb").read()  # noqa: SIM115
    headers = {
        "webhook-id": args.webhook_id,
        "webhook-timestamp": args.webhook_timestamp,
        "webhook-signature": args.webhook_signature,
    }
    try:
        verify(args.secret, headers, body, tolerance=args.tolerance)
    except SignatureMismatch as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    print("valid")
    return 0
