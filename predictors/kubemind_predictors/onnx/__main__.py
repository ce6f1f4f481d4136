"""python -m kubemind_predictors.onnx --model_name NAME --model_dir DIR --host 127.0.0.1 \\
    --http_port P --grpc_port Q [--max_batch_size 64] [--max_queue_delay_ms 0] [--intra_op_threads 1]"""

from __future__ import annotations

import sys

from kubemind.server import run
from kubemind.settings import parse_settings
from kubemind_predictors.onnx.predictor import OnnxPredictor
from kubemind_predictors.onnx.settings import OnnxSettings


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(OnnxSettings, argv, prog="python -m kubemind_predictors.onnx")
    model = OnnxPredictor(settings)
    model.load()
    run(settings, [model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
