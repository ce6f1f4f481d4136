"""python -m kubemind_workers --models simple --triton_grpc_port 8001 --broker kafka \\
    --broker_url 127.0.0.1:9092 --database_url postgresql://... [--launch_triton true]

The Triton predictor with the async jobs routes (the job writer). The CV worker is
`python -m kubemind_workers.worker`.
"""

from __future__ import annotations

import sys

from kubemind.settings import parse_settings
from kubemind_predictors.triton.runtime import serve_predictor
from kubemind_workers.settings import JobWriterSettings
from kubemind_workers.writer import JobWriter


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(JobWriterSettings, argv, prog="python -m kubemind_workers")
    return serve_predictor(settings, [JobWriter(settings)])


if __name__ == "__main__":
    sys.exit(main())
