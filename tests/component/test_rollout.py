"""The release controller end to end: `kubemind up` and its Kubernetes API, the `kubernetes`
client, a real Prometheus scraping the replicas, load through the gateway the whole time.

One rig serves the tests in order: a good candidate is promoted with no failed request, an
erroring one and a slow one are rolled back within failureLimit intervals, a rollout whose Prometheus stops
holds and continues once it is back, and the audit log of all of it verifies.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from kubemind.release.controller import CANARY, PROMOTED, ROLLED_BACK
from tests.component.rollout_fixtures import (
    Load,
    Rig,
    new_revision,
    predictor_status,
    running_rig,
    state_of,
    wait_for_rolled_out,
    wait_for_state,
)
from tests.component.up_fixtures import cli

READY_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(tmp_path_factory.mktemp("rollout"), READY_TIMEOUT) as rig:
        yield rig


def test_a_good_candidate_is_promoted_with_no_failed_request(rig: Rig) -> None:
    primary = predictor_status(rig.api)["latestRolledoutRevision"]
    load = Load(rig.gateway)
    try:
        new_revision(rig.api, (), version="2")
        state = wait_for_state(rig.api, lambda s: s.phase == PROMOTED, "promoted", timeout=300)
    finally:
        load.finish()
    assert load.errors == [] and load.done > 100, load.errors[:5]
    assert load.stale_retries <= 3, load.stale_retries
    assert state.candidate != primary
    wait_for_rolled_out(rig.api, state.candidate)
    assert "canaryTrafficPercent" not in rig.api.get_isvc("kubemind", "simple")["spec"]["predictor"]
    # Both revisions served during the rollout; the candidate passed its gates on real samples.
    assert load.by_revision.get(state.candidate, 0) > 0 and load.by_revision.get(primary, 0) > 0
    assert state.gates["success"]["value"] == 1.0 and state.gates["samples"] >= 5
    actions = [r["action"] for r in map(_json, rig.controller.audit.lines())]
    assert actions[:1] == ["rollout.start"] and "rollout.step" in actions and actions[-1] == "rollout.promote"


def test_an_erroring_candidate_is_rolled_back_within_the_failure_limit(rig: Rig) -> None:
    primary = predictor_status(rig.api)["latestRolledoutRevision"]
    load = Load(rig.gateway)  # the candidate fails 90 % of its share: the evidence
    try:
        new_revision(rig.api, ("--error_percent=90",), version="3")
        started = wait_for_state(rig.api, lambda s: s.candidate != primary and s.phase == CANARY, "started")
        state = wait_for_state(rig.api, lambda s: s.phase == ROLLED_BACK, "rolled back", timeout=120)
    finally:
        load.finish()
    assert load.errors and all(error.startswith(f"500 from {started.candidate}") for error in load.errors)
    assert state.candidate == started.candidate and state.failures == 2  # failureLimit
    assert rig.api.get_isvc("kubemind", "simple")["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert "success" in state.reason and "rolled back: failureLimit 2 reached" in state.reason
    annotations = rig.api.get_isvc("kubemind", "simple")["metadata"]["annotations"]
    assert annotations["kubemind.io/rollout-reason"] == state.reason
    # Every request goes to the primary again.
    rig.up.wait_for(lambda s: {r["revision"]: r["traffic"] for r in s["services"][0]["components"][0]["revisions"]}
                    .get(primary) == 100, "all traffic on the primary")
    records = [_json(line) for line in rig.controller.audit.lines()]
    failed = [r for r in records if r["action"] == "rollout.analysis" and r["after"]["revision"] == state.candidate]
    assert len(failed) == 2 and failed[0]["reason"]["gates"]["success"]["value"] < 0.99
    assert records[-1]["action"] == "rollout.rollback" and records[-1]["before"]["weight"] == 20


def test_a_slow_candidate_is_rolled_back_on_the_latency_gate_with_no_failed_request(rig: Rig) -> None:
    primary = predictor_status(rig.api)["latestRolledoutRevision"]
    load = Load(rig.gateway)  # 300 ms per answer against the policy's p90 of 200 ms: slow, not failing
    try:
        new_revision(rig.api, ("--delay_seconds=0.3",), version="3")
        started = wait_for_state(rig.api, lambda s: s.candidate != primary and s.phase == CANARY, "started")
        state = wait_for_state(rig.api, lambda s: s.phase == ROLLED_BACK and s.candidate == started.candidate,
                               "rolled back", timeout=120)
    finally:
        load.finish()
    assert load.errors == [], load.errors[:5]
    assert load.by_revision.get(state.candidate, 0) > 0  # it served its canary share, slowly
    assert state.failures == 2 and "p90" in state.reason and "success" not in state.reason, state.reason
    assert state.gates["p90"]["value"] > 0.2 and state.gates["success"]["value"] == 1.0
    rig.up.wait_for(lambda s: {r["revision"]: r["traffic"] for r in s["services"][0]["components"][0]["revisions"]}
                    .get(primary) == 100, "all traffic on the primary")


def test_a_rollout_holds_while_prometheus_is_down_and_continues_after(rig: Rig) -> None:
    previous = state_of(rig.api)
    load = Load(rig.gateway)
    try:
        new_revision(rig.api, (), version="4")
        wait_for_state(rig.api, lambda s: s.candidate != (previous.candidate if previous else "")
                       and s.phase == CANARY and s.passes_at_step >= 1, "passing its first step")
        rig.prometheus.stop()
        try:
            held = wait_for_state(rig.api, lambda s: "cannot be reached" in s.reason, "held", timeout=60)
            assert held.phase == CANARY and held.reason.startswith(f"held at {held.weight}%")
            time.sleep(4)  # longer than the step's pause: without evidence it must not move on
            still = state_of(rig.api)
            assert still is not None and (still.phase, still.weight) == (CANARY, held.weight), still
        finally:
            rig.prometheus.start()
        state = wait_for_state(rig.api, lambda s: s.phase == PROMOTED, "promoted after Prometheus returned", 300)
    finally:
        load.finish()
    assert state.candidate == held.candidate and load.errors == [], load.errors[:5]


def test_a_missing_policy_holds_and_a_manual_abort_rolls_back_audited(rig: Rig) -> None:
    rig.api.patch_isvc("kubemind", "simple", {"metadata": {"annotations": {"kubemind.io/rollout-policy": "missing"}}})
    try:
        new_revision(rig.api, (), version="5")
        held = wait_for_state(rig.api, lambda s: "RolloutPolicy missing not found" in s.reason, "held", timeout=60)
        assert held.reason.startswith("held at 20%")
        assert rig.api.get_isvc("kubemind", "simple")["spec"]["predictor"]["canaryTrafficPercent"] == 20
        status = cli(rig.up.home, "rollout", "status", "simple", "--kubeconfig", str(rig.up.kubeconfig))
        assert status.returncode == 0 and json.loads(status.stdout)["candidate"] == held.candidate, status.stderr
        aborted = cli(rig.up.home, "rollout", "abort", "simple", "--reason", "no policy", "--kubeconfig",
                      str(rig.up.kubeconfig))
        assert aborted.returncode == 0, aborted.stderr
        assert "rolled back: manual override by" in aborted.stdout and "no policy" in aborted.stdout
    finally:
        rig.api.patch_isvc("kubemind", "simple", {"metadata": {"annotations": {"kubemind.io/rollout-policy": "fast"}}})
    assert rig.api.get_isvc("kubemind", "simple")["spec"]["predictor"]["canaryTrafficPercent"] == 0
    state = state_of(rig.api)
    assert state is not None and (state.candidate, state.phase) == (held.candidate, ROLLED_BACK)
    shown = cli(rig.up.home, "audit", "show", "--model", "simple", "--format", "json")
    last = json.loads(shown.stdout)[-1]
    assert last["action"] == "rollout.rollback" and "no policy" in last["reason"]["why"]


def test_the_audit_log_of_the_rollouts_verifies(rig: Rig) -> None:
    result = rig.controller.audit.verify()
    assert result.ok and result.records >= 8, result
    records = [_json(line) for line in rig.controller.audit.lines()]
    holds = [r for r in records if r["action"] == "rollout.hold"]
    assert any("cannot be reached" in r["reason"]["why"] for r in holds)
    assert all(r["actor"]["via"] == "kubeconfig" for r in records)
    assert cli(rig.up.home, "audit", "verify").returncode == 0


def _json(line: str) -> dict:
    return dict(json.loads(line))
