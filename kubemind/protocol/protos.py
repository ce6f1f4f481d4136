"""Regenerates the committed protobuf module(s) of kubemind.protocol (`make protos`).

The generated files are committed; tests/unit/test_generated_protos.py regenerates into a
temporary folder and fails when the result differs, so the .proto and its module never drift.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTOCOL_DIR = Path(__file__).parent
# Each .proto becomes a _pb2.py module and a _pb2.pyi stub (for mypy).
PROTO_FILES = ["triton_extensions.proto"]


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) over PROTO_FILES into out_dir; return the files written."""
    from grpc_tools import protoc

    written = []
    for proto in PROTO_FILES:
        code = protoc.main(
            ["protoc", f"-I{PROTOCOL_DIR}", f"--python_out={out_dir}", f"--pyi_out={out_dir}", str(PROTOCOL_DIR / proto)]
        )
        if code != 0:
            raise RuntimeError(f"protoc failed on {proto} (exit {code})")
        stem = proto.removesuffix(".proto")
        written += [out_dir / f"{stem}_pb2.py", out_dir / f"{stem}_pb2.pyi"]
    return written


if __name__ == "__main__":
    for path in generate(PROTOCOL_DIR):
        print(f"generated {path}")
    sys.exit(0)
