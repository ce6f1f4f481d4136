"""Does a PromQL expression parse? Asked of `promtool` (Debian's `prometheus` package), which
parses the rules of a file it checks; without promtool the controller asks the Prometheus it
queries (a 400 bad_data answer), and `kubemind validate` says it could not check."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml

_FAILED = re.compile(r'"kubemind_check_(\d+)": could not parse expression: (.*)$')


def promtool() -> str | None:
    return shutil.which("promtool")


def parse_problems(expressions: Mapping[str, str], binary: str | None = None) -> dict[str, str] | None:
    """{key: parse error} for the expressions that do not parse; None when promtool is missing."""
    binary = binary or promtool()
    if binary is None:
        return None
    if not expressions:
        return {}
    keys = list(expressions)
    rules = [{"record": f"kubemind_check_{i}", "expr": expressions[key]} for i, key in enumerate(keys)]
    with tempfile.TemporaryDirectory(prefix="kubemind-promql-") as folder:
        path = Path(folder) / "rules.yaml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "kubemind-policy", "rules": rules}]}))
        result = subprocess.run([binary, "check", "rules", str(path)], capture_output=True, text=True,
                                timeout=60, check=False)
    problems: dict[str, str] = {}
    for line in (result.stdout + result.stderr).splitlines():
        if match := _FAILED.search(line):
            problems[keys[int(match[1])]] = match[2].strip()
    if result.returncode != 0 and not problems:
        problems[keys[0]] = f"promtool check rules failed: {(result.stdout + result.stderr).strip()[-300:]}"
    return problems
