"""Release control under load: how fast a failing canary is back on its primary, and whether
clients notice promotions and rollbacks at all.

Runs `kubemind up` of the `simple` service with a RolloutPolicy (1 s intervals, failureLimit 2,
steps 20 % and 50 %), a real Prometheus scraping its replicas, the release controller driving
`up`'s Kubernetes API, and one client looping through the gateway the whole time. Then
ROLLOUTS promotions of good candidates and ROLLOUTS rollbacks of slow ones (p90 over the
policy's 200 ms: slow, not failing, so every client error counted is the release machinery's).
Goals (issue 15): first failing interval -> 100 % on the primary within one interval + 5 s
after the failure limit is reached; 0 client errors. BENCH_ROLLOUTS=N changes N (default 10).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from kubemind.release.controller import PROMOTED, ROLLED_BACK
from tests.component.rollout_fixtures import (
    Load,
    new_revision,
    running_rig,
    state_of,
    wait_for_state,
)
from tests.component.up_fixtures import Up

ROLLOUTS = int(os.environ.get("BENCH_ROLLOUTS", "10"))
INTERVAL_SECONDS = 1.0
GOAL_AFTER_LIMIT_SECONDS = INTERVAL_SECONDS + 5.0


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _primary_share(up: Up, primary: str) -> int:
    revisions = up.state().get("services", [{}])[0].get("components", [{}])[0].get("revisions", [])
    return int(next((r["traffic"] for r in revisions if r["revision"] == primary), 0))


def main() -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kubemind-bench-rollout-") as tmp, running_rig(Path(tmp)) as rig:
        up, api, controller = rig.up, rig.api, rig.controller
        load = Load(rig.gateway)
        version, promotions, rollbacks = 1, [], []
        for _ in range(ROLLOUTS):
            version += 1
            begin = time.monotonic()
            # The last rollout's state names its candidate: this one is promoted when another is.
            before = state_of(api)
            new_revision(api, (), version=str(version))
            wait_for_state(api, lambda s, b=before: s.phase == PROMOTED and (b is None or s.candidate != b.candidate),
                           "promoted", 300)
            promotions.append(time.monotonic() - begin)
        errors_after_promotions = len(load.errors)
        for _ in range(ROLLOUTS):
            version += 1
            previous = state_of(api)
            new_revision(api, ("--delay_seconds=0.3",), version=str(version))
            state = wait_for_state(api, lambda s, b=previous: s.phase == ROLLED_BACK and b is not None
                                   and s.candidate != b.candidate, "rolled back", 300)
            primary = state.primary or ""
            while _primary_share(up, primary) != 100:
                time.sleep(0.05)
            back = time.time()
            records = [json.loads(line) for line in controller.audit.lines()]
            mine = [r for r in records if (r.get("after") or {}).get("revision") == state.candidate]
            first_fail = next(_epoch(r["time"]) for r in mine if r["action"] == "rollout.analysis")
            limit = next(_epoch(r["time"]) for r in mine if r["action"] == "rollout.rollback")
            rollbacks.append((back - first_fail, back - limit))
        load.finish()
        print(f"\n{ROLLOUTS} promotions and {ROLLOUTS} rollbacks under load ({load.done} requests through the"
              f" gateway, {os.cpu_count()} CPUs shared with other work)")
        print(f"client errors: {errors_after_promotions} during promotions,"
              f" {len(load.errors) - errors_after_promotions} during rollbacks (goal 0)"
              + (f"; first: {load.errors[0]}" if load.errors else ""))
        print(f"promotion (new revision applied -> promoted, 2 steps x 2 s pause): median"
              f" {statistics.median(promotions):.1f} s, max {max(promotions):.1f} s")
        first = [r[0] for r in rollbacks]
        after = [r[1] for r in rollbacks]
        print(f"first failing interval -> 100 % on the primary: median {statistics.median(first):.2f} s,"
              f" max {max(first):.2f} s (failureLimit 2 x {INTERVAL_SECONDS:g} s intervals)")
        print(f"failure limit reached -> 100 % on the primary: median {statistics.median(after):.2f} s,"
              f" max {max(after):.2f} s (goal <= {GOAL_AFTER_LIMIT_SECONDS:g} s)")
        verified = controller.audit.verify()
        print(f"audit log: {verified.records} records, chain {'intact' if verified.ok else verified.problem}")
    print(f"\nbench_rollout took {time.monotonic() - started:.0f} s (everything stopped)")
