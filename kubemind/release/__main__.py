"""python -m kubemind.release: the rollout controller as a long-running process (a Deployment on
a cluster): every InferenceService of its namespace that names a RolloutPolicy."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from kubemind.release.settings import ReleaseSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubemind.release", description=__doc__)
    for name, field in ReleaseSettings.model_fields.items():
        parser.add_argument(f"--{name}", dest=name, default=argparse.SUPPRESS, help=field.description)
    given = vars(parser.parse_args(argv))
    settings = ReleaseSettings(**given)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    from kubemind.release.controller import Controller

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    controller = Controller(settings)
    logging.getLogger("kubemind.release").info("watching InferenceServices in %s (API user %s, Prometheus %s)",
                                               settings.namespace, controller.api.user, settings.prometheus_url)
    try:
        controller.run(stop)
    finally:
        controller.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
