"""python -m kubemind_transformers.image --model_name efficientnet_lite0 \\
    --predictor_host 127.0.0.1:8081 --host 127.0.0.1 --http_port 8090 --grpc_port 8091"""

from __future__ import annotations

import sys

from kubemind.errors import InvalidSettings
from kubemind.server import run
from kubemind.settings import parse_settings
from kubemind_transformers.image.settings import ImageTransformerSettings
from kubemind_transformers.image.transformer import ImageTransformer


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(ImageTransformerSettings, argv, prog="python -m kubemind_transformers.image")
    if settings.predictor_protocol != "grpc-v2":
        raise InvalidSettings("--predictor_protocol: only grpc-v2 is implemented")
    model = ImageTransformer(settings)
    model.load()
    run(settings, [model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
