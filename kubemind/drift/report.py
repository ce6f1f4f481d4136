"""The drift report: one HTML file, a table of every feature's scores and, per feature, a plot
of the reference against the current window (histograms for numbers, bars for categories).

Plots are PNGs inlined as data: URLs, so the file is self-contained (mail it, attach it to an
incident); matplotlib runs headless (Agg).
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any


def _figure(name: str, feature: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 3.0), dpi=90)
    if feature["kind"] == "numeric":
        reference, current = feature["reference"], feature["current"]
        both = [*reference, *current]
        bins = 30 if both else 1
        span = (min(both), max(both)) if both else (0, 1)
        axes.hist(reference, bins=bins, range=span, density=True, alpha=0.55, label="reference")
        axes.hist(current, bins=bins, range=span, density=True, alpha=0.55, label="current")
    else:
        categories = list(feature["reference"])
        current = feature["current"]
        counts = {c: 0 for c in categories}
        for value in current:
            counts[value if value in counts else "(unseen)"] = counts.get(value if value in counts else "(unseen)", 0) + 1
        total = max(1, len(current))
        positions = range(len(counts))
        axes.bar([p - 0.2 for p in positions], [feature["reference"].get(c, 0.0) for c in counts], width=0.4, label="reference")
        axes.bar([p + 0.2 for p in positions], [n / total for n in counts.values()], width=0.4, label="current")
        axes.set_xticks(list(positions), list(counts), rotation=45, ha="right", fontsize=7)
    axes.set_title(name, fontsize=9)
    axes.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def render(report: dict[str, Any]) -> str:
    """The report of one model (the drift service's /v1/drift/{model} answer) as HTML."""
    model = html.escape(report["model"])
    rows, figures = [], []
    for name, feature in report["features"].items():
        drifted = feature.get("drifted")
        status = "no data" if drifted is None else ("DRIFT" if drifted else "ok")
        rows.append(
            f"<tr class='{'drift' if drifted else ''}'><td>{html.escape(name)}</td><td>{_cell(feature.get('method'))}</td>"
            f"<td>{_cell(feature.get('score'))}</td><td>{_cell(feature.get('p_value'))}</td><td>{_cell(feature.get('psi'))}</td>"
            f"<td>{feature['count']}</td><td>{status}</td></tr>"
        )
        figures.append(
            f"<figure><img class='drift-figure' data-feature='{html.escape(name)}' alt='reference vs current: {html.escape(name)}' "
            f"src='data:image/png;base64,{_figure(name, feature)}'><figcaption>{html.escape(name)}: {status}</figcaption></figure>"
        )
    drifted = ", ".join(html.escape(f) for f in report["drifted_features"]) or "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report: {model}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
tr.drift td{{background:#fdd}}figure{{display:inline-block;margin:1em}}</style>
<script>
// Marks, once everything has loaded, how many figures decoded (headless checks read it).
window.addEventListener("load", () => {{
  document.body.dataset.figuresLoaded = [...document.querySelectorAll("img.drift-figure")].filter(i => i.naturalWidth > 0).length;
}});
</script></head>
<body><h1>Drift report: {model}</h1>
<p>Window: last {report["window_size"]} rows. Drifted: {drifted} ({report["drifted_share"]:.0%} of scored features).</p>
<table><tr><th>feature</th><th>method</th><th>score</th><th>p-value</th><th>PSI</th><th>rows</th><th>status</th></tr>
{"".join(rows)}</table>
{"".join(figures)}
</body></html>
"""


__all__ = ["render"]
