"""The rollout loop: for each InferenceService that names a RolloutPolicy, take its latest
revision through shadow and canary steps by patching `canaryTrafficPercent`, promote it
(remove the split) or roll it back (0), and say why in its annotations and the audit log.

The state lives on the InferenceService itself (annotation kubemind.io/rollout-state), so a
restarted controller, `kubemind rollout status` and `kubectl get -o yaml` all see the same.
A new revision must arrive with a canary split (the canary component sets 10%; 0 for a shadow
phase): without one KServe gives it all traffic before any controller can look. In a shadow
phase the candidate answers no client: the VirtualServices that route to the InferenceService
mirror a copy of its requests to the candidate revision (shadow.py), and the candidate must
agree with the primary (prediction PSI) besides passing the gates, before any canary step.

Fail closed: a missing or refused policy, an unreachable Prometheus or API server, no data or
fewer samples than the minimum hold the weight where it is, and the reason is reported.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from kubemind.audit import AuditLog, AuditRecord, audit_log
from kubemind.audit.actor import current_actor
from kubemind.errors import KubemindError
from kubemind.release.analysis import FAIL, HOLD, PASS, Verdict, evaluate
from kubemind.release.errors import KubernetesApiError, PolicyRejected
from kubemind.release.kube import KubeApi
from kubemind.release.policy import POLICY_ANNOTATION, Gate, Policy, parse_policy
from kubemind.release.prometheus import Prometheus
from kubemind.release.settings import ReleaseSettings
from kubemind.release.shadow import mirror_patch, routes_to

logger = logging.getLogger("kubemind.release")

STATE_ANNOTATION = "kubemind.io/rollout-state"
REASON_ANNOTATION = "kubemind.io/rollout-reason"
PAUSED_ANNOTATION = "kubemind.io/rollout-paused"
MODEL_NAME_ANNOTATION = "kubemind.io/model-name"
MODEL_VERSION_ANNOTATION = "kubemind.io/model-version"
ROLLOUT_TAG = "kubemind.rollout"
"""The MLflow version tag holding the rollout state: shadow, canary N%, promoted, rolled back."""

SHADOW, CANARY, PROMOTED, ROLLED_BACK = "shadow", "canary", "promoted", "rolled-back"
SHADOW_AGREEMENT = "shadow-agreement"
"""The shadow phase's own gate: the candidate's predictions on the mirrored copies against the
primary's on the same requests (PSI at most spec.shadow.maxPsi)."""
DONE = (PROMOTED, ROLLED_BACK)


@dataclass
class RolloutState:
    candidate: str
    primary: str | None
    phase: str
    step: int = 0
    weight: int = 0
    failures: int = 0
    step_started: float = 0.0
    passes_at_step: int = 0
    last_analysis: float = 0.0
    outcome: str = ""
    reason: str = ""
    gates: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_annotations(cls, annotations: dict[str, str]) -> RolloutState | None:
        try:
            loaded = json.loads(annotations.get(STATE_ANNOTATION) or "null")
            return cls(**loaded) if isinstance(loaded, dict) else None
        except (ValueError, TypeError):
            return None


def revisions(isvc: dict[str, Any]) -> tuple[str | None, str | None]:
    """(primary, candidate) of the predictor from KServe's status: the rolled-out revision and
    the latest created one when they differ (None: nothing to roll out)."""
    predictor = ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}
    rolled_out, latest = predictor.get("latestRolledoutRevision"), predictor.get("latestCreatedRevision")
    if not latest or latest == rolled_out:
        return rolled_out, None
    return rolled_out, latest


class Controller:
    def __init__(self, settings: ReleaseSettings, api: KubeApi | None = None, log: AuditLog | None = None,
                 prometheus: Prometheus | None = None):
        self.settings = settings
        self.api = api or KubeApi(settings.kubeconfig, settings.context)
        self.audit = log or audit_log()
        self.actor = current_actor(f"kubeconfig:{self.api.user}") if self.api.user != "unknown" else current_actor()
        self._prometheus: dict[str, Prometheus] = {}
        if prometheus is not None:
            self._prometheus[prometheus.url] = prometheus
        self.last_reason: dict[str, str] = {}

    def prometheus(self, policy: Policy) -> Prometheus:
        url = (policy.prometheus_url or self.settings.prometheus_url).rstrip("/")
        if url not in self._prometheus:
            self._prometheus[url] = Prometheus(url)
        return self._prometheus[url]

    # -- one look at one InferenceService ------------------------------------------------------
    def reconcile(self, name: str, now: float | None = None) -> RolloutState | None:
        """Advance `name`'s rollout by at most one decision; returns its state (None when it has
        nothing to roll out). Holds (and reports) on every missing piece of evidence."""
        now = time.time() if now is None else now
        namespace = self.settings.namespace
        isvc = self.api.get_isvc(namespace, name)
        annotations = (isvc.get("metadata") or {}).get("annotations") or {}
        policy_name = annotations.get(POLICY_ANNOTATION)
        if not policy_name:
            return None
        primary, candidate = revisions(isvc)
        state = RolloutState.from_annotations(annotations)
        if candidate is None:
            return state
        if state is not None and state.candidate == candidate and state.phase in DONE:
            return state
        try:
            policy = parse_policy(self.api.get_policy(namespace, policy_name), check_promql=False)
        except KubernetesApiError as exc:
            why = (f"RolloutPolicy {policy_name} not found" if exc.code == 404 else str(exc))
            return self._hold(isvc, state, candidate, primary, f"{why}; holding")
        except PolicyRejected as exc:
            return self._hold(isvc, state, candidate, primary, f"RolloutPolicy {policy_name} refused: {exc}; holding")
        if state is None or state.candidate != candidate:
            return self._start(isvc, policy, primary, candidate, now)
        if annotations.get(PAUSED_ANNOTATION) == "true":
            return self._hold(isvc, state, candidate, primary, "paused (kubemind rollout resume continues)")
        if now - state.last_analysis < policy.interval_seconds:
            return state
        state.last_analysis = now
        extra: tuple[tuple[Gate, str], ...] = ()
        if state.phase == SHADOW and policy.shadow is not None:
            # Every interval: an overlay re-applied since may have replaced the VirtualService.
            if not self._mirror(isvc, candidate, policy.shadow.mirror_percent):
                return self._hold(isvc, state, candidate, primary, f"shadow: no VirtualService in"
                                  f" {self.settings.namespace} routes to {name}, so nothing is mirrored to {candidate}")
            extra = ((Gate(SHADOW_AGREEMENT, "predictionPsi", max=policy.shadow.max_psi), "spec.shadow.maxPsi"),)
        try:
            verdict = evaluate(self.prometheus(policy), policy, primary, candidate, extra)
        except PolicyRejected as exc:
            return self._hold(isvc, state, candidate, primary, f"RolloutPolicy {policy_name} refused: {exc}; holding")
        state.gates = verdict.values
        if verdict.outcome == HOLD:
            return self._hold(isvc, state, candidate, primary, verdict.reason)
        if verdict.outcome == FAIL:
            state.failures += 1
            failed = ("rollout.analysis", verdict.values,
                      f"failed interval {state.failures} of failureLimit {policy.failure_limit}: {verdict.reason}")
            if state.failures >= policy.failure_limit:
                return self.rollback(isvc, state, f"failureLimit {policy.failure_limit} reached: {verdict.reason}",
                                     verdict.values, first=failed)
            self._patch_state(isvc, state, verdict, f"failed interval {state.failures}/{policy.failure_limit}"
                              f" at {state.weight}%: {verdict.reason}")
            self._record(isvc, failed[0], state, state, failed[1], failed[2])  # once the patch holds
            return state
        assert verdict.outcome == PASS
        state.passes_at_step += 1
        return self._advance(isvc, policy, state, verdict, now)

    def _start(self, isvc: dict[str, Any], policy: Policy, primary: str | None, candidate: str,
               now: float) -> RolloutState:
        phase, weight = (SHADOW, 0) if policy.shadow else (CANARY, policy.steps[0].weight)
        state = RolloutState(candidate, primary, phase, 0, weight, step_started=now, last_analysis=now)
        how = f"canary {weight}%"
        if policy.shadow is not None:  # the copies flow before the state says shadow
            mirrored = self._mirror(isvc, candidate, policy.shadow.mirror_percent)
            how = (f"shadow, {policy.shadow.mirror_percent}% mirrored by {', '.join(mirrored)}" if mirrored else
                   f"shadow, but no VirtualService routes to {isvc['metadata']['name']}: nothing to mirror")
        reason = f"new revision {candidate}: {how}"
        return self._move(isvc, "rollout.start", None, state, weight, reason, None)

    def _mirror(self, isvc: dict[str, Any], revision: str | None, percent: int = 0) -> list[str]:
        """Point the namespace's VirtualServices' routes to this InferenceService at `revision`
        as their mirror (None: remove the mirror this controller set); the ones that route to it."""
        namespace, name = self.settings.namespace, isvc["metadata"]["name"]
        routing = []
        for virtual_service in self.api.list_virtual_services(namespace):
            patch = mirror_patch(virtual_service, name, namespace, revision, percent)
            if patch is not None:
                self.api.patch_virtual_service(namespace, virtual_service["metadata"]["name"], patch)
            if routes_to(virtual_service, name, namespace):
                routing.append(f"VirtualService/{virtual_service['metadata']['name']}")
        return routing

    def _advance(self, isvc: dict[str, Any], policy: Policy, state: RolloutState, verdict: Verdict,
                 now: float) -> RolloutState:
        before = RolloutState(**asdict(state))
        if state.phase == SHADOW:
            assert policy.shadow is not None
            if now - state.step_started < policy.shadow.duration_seconds:
                return self._patch_state(isvc, state, verdict, f"shadow: gates pass, {verdict.values.get('samples')}"
                                         " mirrored request(s) so far")
            state.phase, state.step, state.weight = CANARY, 0, policy.steps[0].weight
        elif now - state.step_started < policy.steps[state.step].pause_seconds:
            return self._patch_state(isvc, state, verdict, f"canary {state.weight}%: gates pass, pausing")
        elif state.step + 1 < len(policy.steps):
            state.step += 1
            state.weight = policy.steps[state.step].weight
        else:
            return self.promote(isvc, state, f"every step passed (last at {state.weight}%)", verdict.values, policy)
        state.step_started, state.passes_at_step = now, 0
        return self._move(isvc, "rollout.step", before, state, state.weight, f"gates pass: canary {state.weight}%",
                          verdict.values)

    # -- decisions (the CLI's manual overrides too) ------------------------------------------------
    def promote(self, isvc: dict[str, Any], state: RolloutState, reason: str, values: Any = None,
                policy: Policy | None = None) -> RolloutState:
        before = RolloutState(**asdict(state))
        state.phase, state.weight, state.outcome = PROMOTED, 100, PROMOTED
        moved = self._move(isvc, "rollout.promote", before, state, None, f"promoted: {reason}", values)
        if policy is not None and policy.move_alias:
            self._move_alias(isvc, policy.move_alias)
        return moved

    def rollback(self, isvc: dict[str, Any], state: RolloutState, reason: str, values: Any = None,
                 first: tuple[str, Any, str] | None = None) -> RolloutState:
        """`first`: the failed interval that reached the limit, recorded once the rollback is patched."""
        before = RolloutState(**asdict(state))
        state.phase, state.weight, state.outcome = ROLLED_BACK, 0, ROLLED_BACK
        return self._move(isvc, "rollout.rollback", before, state, 0, f"rolled back: {reason}", values, first)

    def set_paused(self, name: str, paused: bool) -> None:
        isvc = self.api.get_isvc(self.settings.namespace, name)
        self._patch(isvc, {"metadata": {"annotations": {PAUSED_ANNOTATION: "true" if paused else None}}})
        state = RolloutState.from_annotations((isvc.get("metadata") or {}).get("annotations") or {})
        self._record(isvc, "rollout.pause" if paused else "rollout.resume", state, state, None,
                     "paused by an operator" if paused else "resumed by an operator")

    # -- patches and records --------------------------------------------------------------------------
    def _move(self, isvc: dict[str, Any], action: str, before: RolloutState | None, state: RolloutState,
              weight: int | None, reason: str, values: Any, first: tuple[str, Any, str] | None = None) -> RolloutState:
        """Patch the traffic (`weight` None removes the split: promotion) with the new state."""
        if before is not None and before.phase == SHADOW and state.phase != SHADOW:
            self._mirror(isvc, None)  # first: a failure leaves the rollout in shadow, decided again
        state.reason = reason
        name = isvc["metadata"]["name"]
        self._patch(isvc, {
            "metadata": {"annotations": {STATE_ANNOTATION: state.to_json(), REASON_ANNOTATION: reason}},
            "spec": {"predictor": {"canaryTrafficPercent": weight}},
        })
        self.last_reason[name] = reason
        logger.info("%s: %s", name, reason)
        if first is not None:
            self._record(isvc, first[0], before, before, first[1], first[2])
        self._record(isvc, action, before, state, values, reason)
        self._tag(isvc, state)
        return state

    def _patch_state(self, isvc: dict[str, Any], state: RolloutState, verdict: Verdict | None,
                     reason: str) -> RolloutState:
        state.reason = reason
        name = isvc["metadata"]["name"]
        annotations = {STATE_ANNOTATION: state.to_json(), REASON_ANNOTATION: reason}
        current = isvc["metadata"].get("annotations") or {}
        if any(current.get(key) != value for key, value in annotations.items()):
            self._patch(isvc, {"metadata": {"annotations": annotations}})
        if self.last_reason.get(name) != reason:
            logger.info("%s: %s", name, reason)
        self.last_reason[name] = reason
        return state

    def _patch(self, isvc: dict[str, Any], patch: dict[str, Any]) -> None:
        """A merge patch conditional on the resourceVersion this decision was made from: a
        concurrent write (an operator's abort, another controller) makes it fail with 409, and
        the next look decides again from what is there now."""
        metadata = isvc["metadata"]
        patch = {**patch, "metadata": {**patch.get("metadata", {}), "resourceVersion": metadata["resourceVersion"]}}
        self.api.patch_isvc(self.settings.namespace, metadata["name"], patch)

    def _hold(self, isvc: dict[str, Any], state: RolloutState | None, candidate: str, primary: str | None,
              reason: str) -> RolloutState:
        held = state if state is not None and state.candidate == candidate else \
            RolloutState(candidate, primary, CANARY, weight=_current_weight(isvc))
        name = isvc["metadata"]["name"]
        reason = f"held at {_current_weight(isvc)}%: {reason}"
        changed = self.last_reason.get(name) != reason
        self._patch_state(isvc, held, None, reason)
        if changed:  # one record per distinct reason, not one per interval
            self._record(isvc, "rollout.hold", held, held, held.gates, reason)
        return held

    def _record(self, isvc: dict[str, Any], action: str, before: RolloutState | None, after: RolloutState | None,
                values: Any, reason: str) -> None:
        metadata = isvc["metadata"]
        annotations = metadata.get("annotations") or {}
        subject = after or before
        self.audit.append(AuditRecord(
            action, {"kind": "InferenceService", "name": metadata["name"], "namespace": metadata.get("namespace")},
            model=annotations.get(MODEL_NAME_ANNOTATION) or metadata["name"],
            version=annotations.get(MODEL_VERSION_ANNOTATION) or (subject.candidate if subject else None),
            before=_view(before), after=_view(after),
            reason={"why": reason, "gates": values if isinstance(values, dict) else None},
            actor=self.actor))

    def _registry(self) -> Any:
        from kubemind_registry.mlflow_store import MlflowRegistry
        from kubemind_registry.settings import RegistrySettings

        return MlflowRegistry(RegistrySettings())

    def _tag(self, isvc: dict[str, Any], state: RolloutState) -> None:
        annotations = isvc["metadata"].get("annotations") or {}
        model, version = annotations.get(MODEL_NAME_ANNOTATION), annotations.get(MODEL_VERSION_ANNOTATION)
        if not (self.settings.registry_tags and model and version):
            return
        value = {SHADOW: "shadow", CANARY: f"canary {state.weight}%", PROMOTED: "promoted",
                 ROLLED_BACK: "rolled back"}[state.phase]
        try:
            self._registry().set_version_tag(model, version, ROLLOUT_TAG, value)
        except KubemindError as exc:  # the rollout itself does not wait on the registry
            logger.warning("%s: could not tag %s/%s with %s=%s: %s", isvc["metadata"]["name"], model, version,
                           ROLLOUT_TAG, value, exc)

    def _move_alias(self, isvc: dict[str, Any], alias: str) -> None:
        annotations = isvc["metadata"].get("annotations") or {}
        model, version = annotations.get(MODEL_NAME_ANNOTATION), annotations.get(MODEL_VERSION_ANNOTATION)
        if not (model and version):
            logger.warning("%s: promotion.moveAlias %s, but no %s/%s annotations name the version",
                           isvc["metadata"]["name"], alias, MODEL_NAME_ANNOTATION, MODEL_VERSION_ANNOTATION)
            return
        from kubemind_registry.register import set_alias

        try:
            set_alias(self._registry(), model, alias, version)
        except KubemindError as exc:
            logger.warning("%s: could not move %s@%s to %s: %s", isvc["metadata"]["name"], model, alias, version, exc)

    # -- the long-running loop ---------------------------------------------------------------------
    def run(self, stop: Any, names: list[str] | None = None, until_done: bool = False) -> None:
        """Reconcile every managed InferenceService (or `names`) each tick until `stop` is set;
        `until_done`: return once each named rollout is promoted or rolled back."""
        while not stop.is_set():
            try:
                targets = names or [item["metadata"]["name"] for item in self.api.list_isvcs(self.settings.namespace)
                                    if POLICY_ANNOTATION in ((item["metadata"].get("annotations")) or {})]
                states = {}
                for name in targets:
                    try:
                        states[name] = self.reconcile(name)
                    except KubernetesApiError as exc:
                        self._report_api_error(name, exc)
                if until_done and names and all(s is not None and s.phase in DONE for s in states.values()) \
                        and len(states) == len(names):
                    return
            except KubernetesApiError as exc:
                self._report_api_error("(list)", exc)
            stop.wait(self.settings.tick_seconds)

    def _report_api_error(self, name: str, exc: KubernetesApiError) -> None:
        reason = f"held: the Kubernetes API failed: {exc}"
        if self.last_reason.get(name) != reason:
            logger.warning("%s: %s", name, reason)
        self.last_reason[name] = reason

    def close(self) -> None:
        for prometheus in self._prometheus.values():
            prometheus.close()
        self.api.close()


def _view(state: RolloutState | None) -> dict[str, Any] | None:
    return None if state is None else {"revision": state.candidate, "phase": state.phase, "weight": state.weight,
                                       "failures": state.failures}


def _current_weight(isvc: dict[str, Any]) -> int:
    value = ((isvc.get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent")
    return 100 if value is None else int(value)

