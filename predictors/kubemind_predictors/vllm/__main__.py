"""python -m kubemind_predictors.vllm --model_name M --model_dir DIR --http_port P --grpc_port Q --host 127.0.0.1

The `__main__` guard matters: vLLM starts its engine core with multiprocessing, which re-imports
the main module in the child.
"""

from __future__ import annotations

import sys

from kubemind.server import run
from kubemind.settings import parse_settings
from kubemind_predictors.vllm.predictor import VLLMPredictor
from kubemind_predictors.vllm.settings import VLLMSettings


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(VLLMSettings, argv, prog="python -m kubemind_predictors.vllm")
    run(settings, [VLLMPredictor(settings)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
