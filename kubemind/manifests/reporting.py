"""How problems are shown: one line each, `file: Kind/name: field.path: message`."""

from __future__ import annotations

import json
from collections.abc import Sequence

from kubemind.manifests.problems import Problem


def format_text(problems: Sequence[Problem], objects_checked: int) -> str:
    lines = [f"{p.source}: {p.object}: {p.path}: {p.message}" for p in problems]
    verdict = f"{len(problems)} problem(s)" if problems else "ok"
    lines.append(f"{verdict} in {objects_checked} object(s)")
    return "\n".join(lines)


def format_json(problems: Sequence[Problem], objects_checked: int) -> str:
    return json.dumps(
        {
            "objects_checked": objects_checked,
            "problems": [
                {"file": p.source, "object": p.object, "path": p.path, "message": p.message}
                for p in problems
            ],
        },
        indent=2,
    )
