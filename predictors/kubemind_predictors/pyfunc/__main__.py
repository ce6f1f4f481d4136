"""python -m kubemind_predictors.pyfunc --model_name NAME --model_dir DIR --http_port P --grpc_port Q --host 127.0.0.1"""

from __future__ import annotations

import sys

from kubemind.errors import KubemindError
from kubemind.server import run
from kubemind.settings import parse_settings
from kubemind_predictors.pyfunc.predictor import PyfuncPredictor
from kubemind_predictors.pyfunc.settings import PyfuncSettings


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(PyfuncSettings, argv, prog="python -m kubemind_predictors.pyfunc")
    try:
        model = PyfuncPredictor(settings)
        model.load()
    except KubemindError as exc:  # no folder, no metadata, a model MLflow cannot load
        print(f"kubemind pyfunc: error: {exc}", file=sys.stderr)
        return 1
    run(settings, [model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
