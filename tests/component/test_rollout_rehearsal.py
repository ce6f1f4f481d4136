"""`kubemind rollout rehearse NAME`, followed as printed: its commands, run by bash under a
running `kubemind up` (Prometheus, kubectl, a curl loop, `kubemind rollout run`), take the
`simple` service through the local overlay's `rehearsal` policy to a promoted candidate."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubemind.processes import free_port
from tests.component.rollout_fixtures import add_resource
from tests.component.up_fixtures import REPO, Up, cli, write_overlay

POLICY = REPO / "inferenceservices" / "overlays" / "local" / "rehearsal-policy.yaml"


@pytest.mark.skipif(not shutil.which("prometheus") or not shutil.which("kubectl"),
                    reason="needs Debian's prometheus and kubectl (make install)")
def test_the_printed_rehearsal_takes_a_canary_to_promotion(tmp_path: Path) -> None:
    home = tmp_path / "home"
    overlay = write_overlay(tmp_path / "overlay" / "local", min_replicas=1)
    add_resource(overlay, "rehearsal-policy.yaml", yaml.safe_load(POLICY.read_text()))
    up = Up(overlay, home)
    script = None
    try:
        up.wait_ready()
        printed = cli(home, "rollout", "rehearse", "simple", "--prometheus_url", f"http://127.0.0.1:{free_port()}")
        assert printed.returncode == 0, printed.stderr
        commands = printed.stdout
        assert "kubectl -n kubemind annotate isvc simple kubemind.io/rollout-policy=rehearsal" in commands
        # The commands as a user pastes them, with this venv's kubemind first on PATH.
        env = {**os.environ, "KUBEMIND_HOME": str(home), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        log = tmp_path / "rehearsal.log"  # a file, not a pipe: the backgrounded commands keep theirs open
        with log.open("w") as out:
            script = subprocess.Popen(["bash", "-e", "-c", commands], env=env, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
            script.wait(timeout=300)
        output = log.read_text()
        assert script.returncode == 0, output
    finally:
        if script is not None:  # the backgrounded Prometheus and curl loop
            os.killpg(script.pid, signal.SIGTERM)
        up.stop()
    # (after the stop: the state of the rollout is in the annotations the controller wrote)
    assert "promoted: every step passed" in output, output[-2000:]
    verified = cli(home, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    records = [json.loads(line) for line in (home / "audit" / "audit.jsonl").read_text().splitlines()]
    assert [r["action"] for r in records if r["action"] in ("rollout.start", "rollout.promote")] == [
        "rollout.start", "rollout.promote"]
