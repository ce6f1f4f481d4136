"""python -m kubemind_predictors.triton --host 127.0.0.1 --http_port 8080 --grpc_port 8081 \\
    [--launch_triton true] [--models efficientnet_lite0,minilm,simple] [--triton_grpc_port 8001]

With --launch_triton, starts a local tritonserver first and stops it (by PID) after the
predictor has drained; otherwise connects to the Triton at --triton_host/--triton_grpc_port.
"""

from __future__ import annotations

import logging
import sys

from kubemind.server import run
from kubemind.settings import parse_settings
from kubemind.telemetry import configure_logging
from kubemind_predictors.triton.runtime import build_models, launch_local_triton
from kubemind_predictors.triton.settings import TritonPredictorSettings


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(TritonPredictorSettings, argv, prog="python -m kubemind_predictors.triton")
    configure_logging()  # before launching Triton, so its PID is in the log
    # The metrics poller reads Triton every second; httpx would log each read at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    triton = launch_local_triton(settings) if settings.launch_triton else None
    try:
        run(settings, build_models(settings))
    finally:
        if triton is not None:
            triton.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
