"""python -m kubemind_predictors.triton --host 127.0.0.1 --http_port 8080 --grpc_port 8081 \\
    [--launch_triton true] [--models efficientnet_lite0,minilm,simple] [--triton_grpc_port 8001]

With --launch_triton, starts a local tritonserver first and stops it (by PID) after the
predictor has drained; otherwise connects to the Triton at --triton_host/--triton_grpc_port.
"""

from __future__ import annotations

import sys

from kubemind.settings import parse_settings
from kubemind_predictors.triton.runtime import serve_predictor
from kubemind_predictors.triton.settings import TritonPredictorSettings


def main(argv: list[str] | None = None) -> int:
    return serve_predictor(parse_settings(TritonPredictorSettings, argv, prog="python -m kubemind_predictors.triton"))


if __name__ == "__main__":
    sys.exit(main())
