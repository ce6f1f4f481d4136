"""Every generated observability file of a checkout, from observability/slos/ and the code.

The files are committed (CI and reviewers read them, Prometheus and Grafana load them as they
are) and a test fails when regenerating them would change anything: Knative's "no diff" rule.
"""

from __future__ import annotations

from pathlib import Path

from kubemind.observability import dashboards, slo

SLO_DIR = Path("observability/slos")
RULES_DIR = Path("observability/rules")
PROMETHEUS_RULES = Path("inferenceservices/components/monitoring/prometheusrules.yaml")
DASHBOARDS_DIR = Path("observability/dashboards")


def generated_files(root: Path) -> dict[Path, str]:
    """Path (relative to `root`) -> content, for every file this module owns."""
    specs = slo.load_specs(root / SLO_DIR)
    files: dict[Path, str] = {RULES_DIR / f"{spec.service}.rules.yaml": slo.rules_file(spec) for spec in specs}
    files[PROMETHEUS_RULES] = slo.prometheus_rules_manifest(specs)
    for kind in dashboards.KINDS:
        files[DASHBOARDS_DIR / f"{kind}.json"] = dashboards.dashboard_json(kind)
    return files


def stale_files(root: Path) -> list[Path]:
    """The generated files whose committed content differs from a fresh generation."""
    return [
        path for path, content in generated_files(root).items()
        if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != content
    ]


def write_files(root: Path) -> list[Path]:
    """Write what changed; returns the paths written."""
    written = []
    for path in stale_files(root):
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(generated_files(root)[path], encoding="utf-8")
        written.append(path)
    return written
