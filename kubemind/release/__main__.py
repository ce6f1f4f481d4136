"""python -m kubemind.release: the rollout controller as a long-running process (a Deployment on
a cluster): every InferenceService of its namespace that names a RolloutPolicy."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from kubemind.errors import InvalidSettings
from kubemind.release.settings import ReleaseSettings
from kubemind.settings import parse_flags


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_flags(ReleaseSettings, argv, "python -m kubemind.release", __doc__)
    except InvalidSettings as exc:
        print(f"python -m kubemind.release: {exc}", file=sys.stderr)
        return 2
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
