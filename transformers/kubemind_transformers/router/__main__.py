"""python -m kubemind_transformers.router --graph inferencegraph.yaml \\
    --service_hosts cv-classifier=127.0.0.1:8085,llm-chat=127.0.0.1:8090 --host 127.0.0.1 --http_port 8095

A graph that cannot run (a cycle, an unknown node, a bad condition) stops the process at start
with the path to the problem, exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kubemind.server import run
from kubemind.settings import parse_settings
from kubemind_transformers.router.graph import GraphError, load_graphs
from kubemind_transformers.router.model import GraphModel
from kubemind_transformers.router.settings import RouterSettings
from kubemind_transformers.router.steps import ServiceClients


def build_models(settings: RouterSettings) -> list[GraphModel]:
    clients = ServiceClients(settings.retry_budget)
    graphs = [graph for path in settings.graph for graph in load_graphs(Path(path))]
    names = [graph.name for graph in graphs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise GraphError(f"InferenceGraph name(s) {', '.join(duplicates)} given twice")
    return [GraphModel(graph, settings, clients) for graph in graphs]


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(RouterSettings, argv, prog="python -m kubemind_transformers.router")
    try:
        models = build_models(settings)
    except GraphError as exc:
        print(f"kubemind router: {exc.message}", file=sys.stderr)
        return 2
    run(settings, models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
