"""python -m kubemind_predictors.simple --model_name simple --http_port P --grpc_port Q --host 127.0.0.1"""

from __future__ import annotations

import sys

from kubemind.model import KubemindModel
from kubemind.server import run
from kubemind.settings import parse_settings
from kubemind_predictors.simple.model import SimpleIdentityModel, SimpleModel, SimpleStringModel
from kubemind_predictors.simple.settings import SimpleSettings


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(SimpleSettings, argv, prog="python -m kubemind_predictors.simple")
    models: list[KubemindModel] = [
        SimpleModel(settings.model_name, tuple(settings.versions), settings.max_batch_size, settings.delay_seconds,
                    settings.error_percent)
    ]
    if settings.string_model:
        models += [SimpleStringModel(max_batch_size=settings.max_batch_size), SimpleIdentityModel()]
    for model in models:
        model.load()
    run(settings, models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
