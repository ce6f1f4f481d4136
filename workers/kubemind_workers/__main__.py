"""python -m kubemind_workers --models simple --triton_grpc_port 8001 --broker kafka \\
    --broker_url 127.0.0.1:9092 --database_url postgresql://... [--launch_triton true]

The Triton predictor with the async jobs routes (the job writer). The CV worker is
`python -m kubemind_workers.worker`.
"""

from __future__ import annotations

import logging
import sys

from kubemind.server import run
from kubemind.settings import parse_settings
from kubemind.telemetry import configure_logging
from kubemind_predictors.triton.runtime import build_models, launch_local_triton
from kubemind_workers.settings import JobWriterSettings
from kubemind_workers.writer import JobWriter


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(JobWriterSettings, argv, prog="python -m kubemind_workers")
    configure_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    triton = launch_local_triton(settings) if settings.launch_triton else None
    try:
        run(settings, build_models(settings), [JobWriter(settings)])
    finally:
        if triton is not None:
            triton.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
