"""The state file of a running `kubemind up`: what `kubemind status` prints and `kubemind down`
stops, by PID. Written atomically (rename) by the runner, once a second while it runs.

Everything lives under $KUBEMIND_HOME/up (default ~/.kubemind/up): state.json, the gateway's
folder, and the logs, one folder per service.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def up_home() -> Path:
    return Path(os.environ.get("KUBEMIND_HOME") or Path.home() / ".kubemind") / "up"


def state_path() -> Path:
    return up_home() / "state.json"


def kubeconfig_path() -> Path:
    """The kubeconfig a running `kubemind up` writes for its Kubernetes API."""
    return up_home() / "kubeconfig"


def write_state(state: dict[str, Any]) -> None:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(state, indent=2))
    partial.replace(path)


def read_state() -> dict[str, Any] | None:
    try:
        loaded = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def remove_state() -> None:
    state_path().unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def running_up() -> dict[str, Any] | None:
    """The state of a `kubemind up` that is still running, None when none is."""
    state = read_state()
    if state and pid_alive(int(state.get("pid", 0))):
        return state
    return None


def all_pids(state: dict[str, Any]) -> list[int]:
    """Every process the state names: replicas, the gateway, and `up` itself (last)."""
    pids = [pid for service in state.get("services", []) for component in service.get("components", [])
            for revision in component.get("revisions", []) for pid in revision.get("pids", [])]
    gateway = state.get("gateway", {}).get("pid")
    return [*pids, *([gateway] if gateway else []), int(state.get("pid", 0))]
