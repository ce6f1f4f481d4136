"""python -m kubemind_transformers.rag --index_dir ~/.kubemind/rag/python-reference \\
    --llm_url http://127.0.0.1:8090 --feature_repo features --host 127.0.0.1 --http_port 8097

An index built with another embedder stops the process at start, naming both (exit status 1).
"""

from __future__ import annotations

import sys

from kubemind.server import run
from kubemind.settings import parse_settings
from kubemind_transformers.rag.settings import RagSettings
from kubemind_transformers.rag.transformer import RagTransformer


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(RagSettings, argv, prog="python -m kubemind_transformers.rag")
    model = RagTransformer(settings)
    model.load()
    run(settings, [model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
