"""The state file of a running `kubemind up`: what `kubemind status` prints and `kubemind down`
stops, by PID. Written atomically (rename) by the runner, once a second while it runs.

Everything lives under $KUBEMIND_HOME/up (default ~/.kubemind/up): state.json, the replicas as
Prometheus file_sd targets (prometheus-targets.json), the gateway's folder, and the logs, one
folder per service.
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


def prometheus_targets_path() -> Path:
    """Prometheus' file_sd file of the running replicas (`kubemind rollout rehearse` points a
    Prometheus at it): replicas come and go with revisions and restarts."""
    return up_home() / "prometheus-targets.json"


def prometheus_targets(state: dict[str, Any]) -> list[dict[str, Any]]:
    """file_sd groups, one per revision: its replicas' REST ports (where /metrics is), labelled
    as a cluster's PodMonitor labels a pod (the metrics carry `revision` themselves)."""
    groups = []
    for service in state.get("services", []):
        for component in service.get("components", []):
            for revision in component.get("revisions", []):
                targets = sorted(f"127.0.0.1:{ports[0]}" for ports in revision.get("ports", []))
                if targets:
                    groups.append({"targets": targets, "labels": {
                        "namespace": service["namespace"], "inferenceservice": service["name"],
                        "component": component["component"], "revision": revision["revision"]}})
    return groups


def _replace(path: Path, text: str) -> None:
    """Atomically (a reader sees the old file or the new one), and only when it changes."""
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def write_state(state: dict[str, Any]) -> None:
    """The state file, and the Prometheus targets of the replicas it lists."""
    _replace(state_path(), json.dumps(state, indent=2))
    _replace(prometheus_targets_path(), json.dumps(prometheus_targets(state), indent=2))


def read_state() -> dict[str, Any] | None:
    try:
        loaded = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def remove_state() -> None:
    state_path().unlink(missing_ok=True)
    prometheus_targets_path().unlink(missing_ok=True)


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
    activator = state.get("gateway", {}).get("activator_pids", [])
    return [*pids, *activator, *([gateway] if gateway else []), int(state.get("pid", 0))]
