"""The reconcile loop of `kubemind up`: desired specs -> revisions -> gateway routes.

Each component keeps its revisions, the traffic each gets and the last rolled-out revision
(KServe's `latestRolledoutRevision`). A new revision starts beside the old ones and gets traffic
only once `minReplicas` of its replicas are ready:
- no `canaryTrafficPercent`: it takes 100% and becomes the rolled-out revision;
- `canaryTrafficPercent: P` with an earlier rolled-out revision: P% to the new one, the rest to
  the rolled-out one (0 sends everything back to it; 100 or removing the field promotes);
- a revision that no longer gets traffic is stopped after the reload that takes it out.
The loop runs on the main thread because the replicas' die-with-parent signal follows the
thread that started them.

What it reconciles from is the ObjectStore: the overlay's renders and the Kubernetes API's
writes (kubectl, the `kubernetes` client) both land there, and the loop applies the store
whenever its generation moves, then writes each InferenceService's KServe status back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubemind.errors import KubemindError
from kubemind.local.up.activator import Activator
from kubemind.local.up.certs import local_certificate
from kubemind.local.up.cluster_ports import ClusterPorts, replace_cluster_hosts
from kubemind.local.up.gateway import (
    ComponentRoute,
    GatewayConfig,
    HostRoute,
    Nginx,
    RevisionRoute,
    ServiceRoute,
)
from kubemind.local.up.jwt import Verifier
from kubemind.local.up.kube_api import KubeApi, write_kubeconfig
from kubemind.local.up.kube_objects import ObjectKey, ObjectStore, object_key
from kubemind.local.up.kube_resources import GROUP
from kubemind.local.up.kube_status import inference_service_status
from kubemind.local.up.policy import GatewayPolicy, VirtualRoute, gateway_policy
from kubemind.local.up.replicas import Replica, Revision
from kubemind.local.up.specs import (
    POD_MODEL_DIR,
    SERVICE_TABLE_FLAGS,
    ComponentPlan,
    ServicePlan,
    SpecsRejected,
    check_cluster,
    image_folder_stand_ins,
    plan_services,
    render_specs,
    validate_specs,
)
from kubemind.local.up.state import kubeconfig_path, up_home, write_state
from kubemind.local.up.storage import local_model_dir
from kubemind.manifests.istio_routes import service_name
from kubemind.manifests.problems import ManifestObject, Problem
from kubemind.manifests.references import Allowed
from kubemind.processes import free_port

Report = Callable[[str], None]
# Retired revisions get this long after the reload that takes them out of rotation, for the
# requests the old nginx workers still hold.
DRAIN_SECONDS = 2.0
# Knative's default stable window: a minReplicas 0 revision idle this long goes back to zero.
SCALE_TO_ZERO_SECONDS = 60.0
# How often the replicas of a minReplicas 0 revision are asked whether they served anything.
IDLE_CHECK_SECONDS = 1.0


@dataclass
class ComponentState:
    plan: ComponentPlan
    http_port: int
    grpc_port: int
    revisions: dict[str, Revision] = field(default_factory=dict)
    traffic: dict[str, int] = field(default_factory=dict)
    rolled_out: str | None = None
    previous_rolled_out: str | None = None
    """The rolled-out revision before `rolled_out` (KServe's previousRolledoutRevision)."""
    problem: str | None = None

    def desired_traffic(self) -> tuple[dict[str, int], str | None]:
        """(traffic, rolled-out revision) once the latest revision is ready."""
        latest, percent = self.plan.revision, self.plan.canary_percent
        previous = self.rolled_out
        if percent is None or percent >= 100 or previous is None or previous == latest \
                or previous not in self.revisions:
            return {latest: 100}, latest
        return {previous: 100 - percent, latest: percent}, previous


class Runner:
    def __init__(
        self,
        overlay: Path,
        http_port: int,
        grpc_port: int,
        cache_dir: Path | None = None,
        allowed_refs: Iterable[Allowed] = (),
        report: Report = print,
        istio: Sequence[Path] = (),
        api_port: int = 0,
        scale_to_zero_after: float = SCALE_TO_ZERO_SECONDS,
        https_port: int = 8443,
        jwks: Mapping[str, Path] | None = None,
    ):
        self.overlay = overlay
        # The Istio objects the gateway's policies come from (the local rate limit), rendered
        # and validated with the overlay and watched like it.
        self.paths = [overlay, *istio]
        self.fingerprint = ""
        self.gateway_policy = GatewayPolicy()
        self.jwks = dict(jwks or {})
        """jwksUri -> local JWKS file, for RequestAuthentications without an inline jwks."""
        self.verifier: Verifier | None = None
        self.virtual_routes: list[tuple[VirtualRoute, str, tuple[str, str] | None]] = []
        """Each VirtualService route with its service's key and its mirror's (namespace, name):
        a service `up` runs, or one revision (resolved when the gateway is configured)."""
        self.unmirrored: set[str] = set()
        """Routes whose mirror names nothing `up` runs, reported once each."""
        self.allowed_refs = list(allowed_refs)
        self.cache_dir = cache_dir
        self.report = report
        self.home = up_home()
        self.gateway = Nginx(self._folder("gateway"))
        self.activator = Activator(report, grpc_log=self._folder("gateway") / "grpc-activator.log")
        self.cluster_ports = ClusterPorts(self._gateway_ports)
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.generation = 0
        self.services: dict[str, ServicePlan] = {}
        self.components: dict[str, ComponentState] = {}
        self.retiring: list[tuple[float, Revision]] = []
        self.announced_ready = False
        self.store = ObjectStore()
        self.applied_generation = -1
        self.observed: dict[ObjectKey, int] = {}
        """Each InferenceService's metadata.generation the running processes come from."""
        self.api_port = api_port
        self.scale_to_zero_after = scale_to_zero_after
        self.https_port = https_port or free_port()
        self.certificate: tuple[Path, Path] | None = None
        self.next_idle_check = 0.0
        self.api: KubeApi | None = None
        self.kubeconfig = kubeconfig_path()

    def _folder(self, *parts: str) -> Path:
        folder = self.home.joinpath(*parts)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- the loop ----------------------------------------------------------------------------
    def load(self) -> None:
        """Render, validate and start (raises SpecsRejected before anything starts)."""
        rendered = render_specs(self.paths)
        objects = validate_specs(rendered, self.allowed_refs)
        self.fingerprint = rendered.fingerprint
        self.store.sync_rendered(objects)
        self._apply_store()
        self.api = KubeApi(self.store, self.check_change, self.api_port)
        self.api.start()
        write_kubeconfig(self.kubeconfig, self.api.url, self._default_namespace())
        state = self.state()
        self._publish_status(state)
        write_state(state)

    def check_change(self, objects: list[ManifestObject]) -> list[Problem]:
        """What `kubemind validate` finds in the objects a write through the API would leave."""
        return check_cluster(objects, self.allowed_refs)

    def _default_namespace(self) -> str:
        return next((plan.namespace for plan in self.services.values()), "default")

    def run(self, stop: threading.Event, watch_interval: float = 2.0) -> None:
        next_watch = time.monotonic() + watch_interval
        next_state = 0.0
        while not stop.wait(0.2):
            moved = False
            for component in self.components.values():
                for revision in component.revisions.values():
                    revision.poll()
                    for replica in revision.replicas:
                        moved, replica.moved = moved or replica.moved, False
            if moved:
                self._reload()  # a replica restarted on new ports
            now = time.monotonic()
            if now >= next_watch:
                self._watch()
                next_watch = time.monotonic() + watch_interval
            if self.store.generation != self.applied_generation:
                self._apply_store()
            self._settle()
            if now >= self.next_idle_check:
                self._scale_idle_to_zero(now)
                self.next_idle_check = now + IDLE_CHECK_SECONDS
            state = self.state()
            self._publish_status(state)
            if now >= next_state:
                write_state(state)
                next_state = now + 1.0

    def stop(self) -> None:
        if self.api is not None:
            self.api.stop()
            self.kubeconfig.unlink(missing_ok=True)
        self.gateway.stop()
        self.activator.stop()
        self.cluster_ports.stop()
        if self.verifier is not None:
            self.verifier.stop()
        for component in self.components.values():
            for revision in component.revisions.values():
                revision.stop()
        for _, revision in self.retiring:
            revision.stop()

    def _watch(self) -> None:
        """Re-render; a changed overlay is validated and applied, a rejected one is reported and
        the running revisions stay as they are."""
        rendered = render_specs(self.paths)
        if rendered.fingerprint == self.fingerprint:
            return
        self.fingerprint = rendered.fingerprint  # report each change once
        try:
            objects = validate_specs(rendered, self.allowed_refs)
        except SpecsRejected as exc:
            self.report("kubemind up: change refused, the running specs stay:\n" + format_problems(exc))
            return
        self.report(f"kubemind up: {self.overlay} changed; reconciling")
        self.store.sync_rendered(objects)

    def _apply_store(self) -> None:
        """Reconcile to what the store holds now (the overlay's objects and the API's writes)."""
        self.applied_generation = self.store.generation  # before reading: a later write re-applies
        objects = self.store.objects()
        self.observed = {object_key(o.body): int(o.body.get("metadata", {}).get("generation", 0))
                         for o in objects if o.kind == "InferenceService"}
        self._apply(objects)

    def _publish_status(self, state: dict[str, Any]) -> None:
        """Each InferenceService's KServe status, into the store (an event only on a change)."""
        for service in state["services"]:
            key = (GROUP, "InferenceService", service["namespace"], service["name"])
            current = self.store.get(key)
            if current is not None:
                self.store.set_status(key, inference_service_status(
                    service, self.observed.get(key, 0), current.get("status")))

    # -- reconcile ---------------------------------------------------------------------------
    def _apply(self, objects: list[ManifestObject]) -> None:
        plans = plan_services(objects)
        self.gateway_policy = gateway_policy(objects)
        self.services = {f"{p.namespace}/{p.name}": p for p in plans}
        self.virtual_routes = self._virtual_routes(self.gateway_policy.routes)
        if self.gateway_policy.checks_requests and self.verifier is None:
            self.verifier = Verifier(self.gateway_policy, self.jwks, self.report)
        elif self.verifier is not None:
            self.verifier.update(self.gateway_policy, self.jwks)
        wanted: set[str] = set()
        for service in plans:
            if service.problem:
                self.report(f"kubemind up: {service.namespace}/{service.name} does not run here: {service.problem}")
            blocked = None
            for plan in service.components.values():  # the predictor first
                wanted.add(plan.key)
                if blocked is None:
                    blocked = self._want(plan)
                else:  # a transformer without its predictor would only crash-loop
                    self._blocked(plan, blocked)
        for key in [key for key in self.components if key not in wanted]:
            self.report(f"kubemind up: {key} removed; stopping it")
            for revision in self.components.pop(key).revisions.values():
                revision.stop()
        self.announced_ready = False
        self._settle(force=True)

    def _virtual_routes(self, routes: Iterable[VirtualRoute]) -> list[tuple[VirtualRoute, str, tuple[str, str] | None]]:
        """The routes whose destination is a service `up` runs, with their mirror host's Service."""
        found = []
        for route in routes:
            service = "/".join(service_name(route.destination, route.namespace))
            if service not in self.services:
                self.report(f"kubemind up: {route.source}: {route.destination} is not an InferenceService `up`"
                            f" runs; {', '.join(route.hosts)} not routed")
                continue
            found.append((route, service, service_name(route.mirror, route.namespace) if route.mirror else None))
        return found

    def _host_routes(self, entries: dict[str, str], upstreams: set[tuple[str, str]]) -> tuple[HostRoute, ...]:
        """The VirtualService routes for the gateway; a mirror goes to a service's entry or, when
        its host is a revision's Service, to that revision (`upstreams`: (namespace, revision)
        of those the gateway has)."""
        found = []
        for route, service, mirror in self.virtual_routes:
            if service not in entries:
                continue
            to_service = entries.get("/".join(mirror)) if mirror else None
            to_revision = mirror[1] if mirror and not to_service and mirror in upstreams else None
            if mirror and not (to_service or to_revision) and route.source not in self.unmirrored:
                self.unmirrored.add(route.source)
                self.report(f"kubemind up: {route.source}: mirror {route.mirror} is neither an InferenceService"
                            " nor a revision `up` runs; not mirrored")
            elif to_service or to_revision:
                self.unmirrored.discard(route.source)
            found.append(HostRoute(route.hosts, route.prefix, entries[service], route.source, to_service,
                                   route.mirror_percent, to_revision))
        return tuple(found)

    def _state(self, plan: ComponentPlan) -> ComponentState:
        state = self.components.get(plan.key)
        if state is None:
            state = self.components[plan.key] = ComponentState(plan, free_port(), free_port())
        state.plan = plan
        return state

    def _want(self, plan: ComponentPlan) -> str | None:
        """Start the plan's revision unless it runs already; returns why it cannot start."""
        state = self._state(plan)
        if plan.revision in state.revisions:
            return None
        try:
            state.revisions[plan.revision] = self._start_revision(plan)
            state.problem = None
        except (KubemindError, OSError) as exc:
            state.problem = str(exc)
            self.report(f"kubemind up: {plan.revision} does not start: {exc}")
        return state.problem

    def _blocked(self, plan: ComponentPlan, why: str) -> None:
        state = self._state(plan)
        state.problem = f"not started: the predictor does not start ({why})"
        self.report(f"kubemind up: {plan.revision} {state.problem}")

    def _start_revision(self, plan: ComponentPlan) -> Revision:
        revision = Revision(plan)
        for _ in range(plan.min_replicas):
            self._add_replica(revision)
        self.report(f"kubemind up: {plan.revision}: starting {plan.min_replicas} replica(s) of {plan.module}"
                    + (" (scaled to zero: the first request starts one)" if plan.min_replicas == 0 else ""))
        return revision

    def _add_replica(self, revision: Revision) -> None:
        plan = revision.plan
        if revision.args is None:
            revision.args = tuple(self._replica_args(plan))
        logs = self._folder("logs", f"{plan.namespace}.{plan.service}")
        index = len(revision.replicas)
        # K_REVISION as Knative sets it: the replica's metrics carry its revision (release gates).
        env = {**dict(plan.env), "K_REVISION": plan.revision}
        replica = Replica(plan.revision, index, plan.module, revision.args, env,
                          logs / f"{plan.revision}-{index}.log", plan.ready_timeout, self.report)
        replica.start()
        revision.replicas.append(replica)

    def _replica_args(self, plan: ComponentPlan) -> list[str]:
        """The container's args with the pod's paths and the cluster's Service names replaced
        by this machine's folders and ports."""
        folders: dict[str, Path] = dict(image_folder_stand_ins(self.overlay))
        if plan.storage_uri:
            folders[POD_MODEL_DIR] = local_model_dir(plan.storage_uri, self.cache_dir, prefix=f"{plan.revision}: ")
        for index, (mount_path, files) in enumerate(plan.config_volumes):
            folder = self._folder("volumes", plan.revision, str(index))
            for name, content in files:
                (folder / name).write_text(content)
            folders[mount_path] = folder
        args = []
        for arg in plan.args:
            for pod_path, local in sorted(folders.items(), key=lambda item: -len(item[0])):
                arg = arg.replace(pod_path, str(local))
            args.append(replace_cluster_hosts(arg, lambda name, namespace: self._cluster_address(name, namespace)))
        table_flag = SERVICE_TABLE_FLAGS.get(plan.module)
        if table_flag:
            table = [f"{s.name}={self._cluster_address(s.name, s.namespace)}" for s in self.services.values()
                     if s.namespace == plan.namespace and s.components and s.name != plan.service]
            args += [table_flag, ",".join(table)] if table else []
        if plan.component == "transformer":
            predictor = self.components.get(f"{plan.namespace}/{plan.service}/predictor")
            if predictor is not None:
                # The predictor's local address on the gateway, the stand-in for its cluster Service.
                port = predictor.grpc_port if plan.predictor_protocol == "grpc-v2" else predictor.http_port
                args += ["--predictor_host", f"127.0.0.1:{port}"]
        return args

    def _cluster_address(self, name: str, namespace: str) -> str | None:
        """`127.0.0.1:PORT` standing in for the cluster Service NAME.NAMESPACE (an
        InferenceService's entry, or `NAME-predictor` / `NAME-transformer` for one component);
        None for a Service `up` does not run."""
        key = None
        service = self.services.get(f"{namespace}/{name}")
        if service is not None and service.components:
            key = service.components[service.entry].key
        else:
            base, _, component = name.rpartition("-")
            owner = self.services.get(f"{namespace}/{base}")
            if owner is not None and component in owner.components:
                key = owner.components[component].key
        return f"127.0.0.1:{self.cluster_ports.port(key)}" if key else None

    def _gateway_ports(self, key: str) -> tuple[int, int] | None:
        state = self.components.get(key)
        return (state.http_port, state.grpc_port) if state is not None and state.revisions else None

    def _activate(self) -> bool:
        """Scale from zero: a replica for each revision a request waits for; True when one that
        woke became ready (its route changes from the activator to the replica)."""
        wanted = self.activator.wanted()
        woke = False
        for state in self.components.values():
            for revision in state.revisions.values():
                if revision.plan.min_replicas > 0:
                    continue
                if revision.name in wanted and not revision.replicas:
                    self.report(f"kubemind up: {revision.name}: a request arrived; starting a replica")
                    try:
                        self._add_replica(revision)
                    except (KubemindError, OSError) as exc:
                        self.report(f"kubemind up: {revision.name} does not start: {exc}")
                        self.activator.mark_failed(revision.name)
                ready = next((r for r in revision.replicas if r.ready and r.server), None)
                if ready is not None and not revision.activated:
                    assert ready.server is not None
                    self.activator.mark_ready(revision.name, ready.server.http_port, ready.server.grpc_port)
                    revision.activated = woke = True
        return woke

    def _scale_idle_to_zero(self, now: float) -> None:
        """A woken minReplicas 0 revision that answered nothing for `scale_to_zero_after` seconds
        goes back to zero (Knative's scale to zero): routed to the activator again, then stopped."""
        idle: list[Revision] = []
        for state in self.components.values():
            for revision in state.revisions.values():
                if revision.plan.min_replicas > 0 or not revision.activated or not revision.replicas:
                    continue
                samples = [replica.activity() for replica in revision.replicas]
                if any(sample is None for sample in samples):
                    revision.idle_since = now  # starting or restarting: not idle
                    continue
                served = sum(sample[0] for sample in samples if sample)
                in_flight = sum(sample[1] for sample in samples if sample)
                if in_flight or served != revision.served:
                    revision.served, revision.idle_since = served, now
                elif now - revision.idle_since >= self.scale_to_zero_after:
                    idle.append(revision)
        if not idle:
            return
        stopping = []
        for revision in idle:
            self.report(f"kubemind up: {revision.name}: idle for {now - revision.idle_since:.0f}s; scaled to zero")
            stopping += revision.replicas
            revision.replicas, revision.activated, revision.served = [], False, -1.0
            self.activator.mark_cold(revision.name)
        self._reload()  # the activator answers first; the replicas stop once nginx no longer routes to them
        for replica in stopping:
            replica.stop()

    def _settle(self, force: bool = False) -> None:
        """Move traffic to revisions that became ready; reload the gateway when routes change."""
        changed = self._activate() or force
        for state in self.components.values():
            latest = state.revisions.get(state.plan.revision)
            if latest is None:
                continue
            if not state.traffic or latest.ready:
                traffic, rolled_out = state.desired_traffic()
                if not latest.ready:  # nothing routed yet: route to it, answers start once ready
                    traffic = {state.plan.revision: 100}
                if traffic != state.traffic:
                    state.traffic, changed = traffic, True
                if latest.ready:
                    if state.rolled_out not in (None, rolled_out):
                        state.previous_rolled_out = state.rolled_out
                    state.rolled_out = rolled_out
            for name in [n for n in state.revisions if n not in state.traffic and n != state.plan.revision]:
                self.retiring.append((time.monotonic() + DRAIN_SECONDS, state.revisions.pop(name)))
        if changed:
            self._reload()
        now = time.monotonic()
        for due, revision in [item for item in self.retiring if item[0] <= now]:
            self.report(f"kubemind up: {revision.name}: no traffic; stopped")
            revision.stop()
            self.retiring.remove((due, revision))
        if not self.announced_ready and self.all_ready():
            self.announced_ready = True
            problems = sum(bool(s.problem) for s in self.components.values()) + sum(
                bool(p.problem) for p in self.services.values())
            note = f" ({problems} not running here: see the table)" if problems else ""
            self.report(self.table() + self.sample_calls()
                        + f"\nall services ready{note}; Ctrl+C or `kubemind down` stops them.")

    def _reload(self) -> None:
        self.generation += 1
        components = []
        for key, state in self.components.items():
            if not state.revisions:
                continue  # nothing started: no routes (status says why)
            order = sorted(state.revisions, key=lambda name: name != state.rolled_out)  # stable first
            routes = tuple(self._route(state.revisions[name], state.traffic.get(name, 0)) for name in order)
            components.append(ComponentRoute(key, routes, state.http_port, state.grpc_port))
        if self.gateway_policy.tls and self.certificate is None:
            self.certificate = local_certificate(self._folder("gateway", "tls"))
        routed = {component.key for component in components}
        services = tuple(
            ServiceRoute(p.name, p.namespace, p.components[p.entry].key)
            for p in self.services.values() if p.components and p.components[p.entry].key in routed)
        entries = {f"{s.namespace}/{s.name}": s.entry for s in services}
        upstreams = {(component.key.split("/")[0], revision.revision)
                     for component in components for revision in component.revisions}
        host_routes = self._host_routes(entries, upstreams)
        self.gateway.apply(GatewayConfig(self.http_port, self.grpc_port, self.generation,
                                         tuple(components), services, self.gateway.folder, self.gateway_policy,
                                         self.https_port, self.certificate, host_routes,
                                         self.verifier.port if self.verifier else 0))

    def _route(self, revision: Revision, percent: int) -> RevisionRoute:
        if revision.plan.min_replicas == 0 and not revision.activated:
            return RevisionRoute(revision.name, percent, (), (self.activator.port, self.activator.grpc_port))
        return RevisionRoute(revision.name, percent, tuple(r.ports for r in revision.replicas if r.ports))

    # -- what status shows -------------------------------------------------------------------
    def all_ready(self) -> bool:
        """Every component that can run here is ready (those that cannot are reported apart)."""
        return all(
            state.problem is not None or (state.plan.revision in state.revisions
            and state.revisions[state.plan.revision].ready
            and all(state.revisions[n].ready for n in state.traffic if n in state.revisions))
            for state in self.components.values())

    def state(self) -> dict[str, Any]:
        services = []
        for key, plan in self.services.items():
            components = []
            for name in plan.components:
                state = self.components.get(plan.components[name].key)
                if state is None:
                    continue
                components.append({
                    "component": name,
                    "rolled_out": state.rolled_out,
                    "previous_rolled_out": state.previous_rolled_out,
                    "traffic": dict(state.traffic),
                    "latest": state.plan.revision,
                    "problem": state.problem,
                    "address": {"http": f"127.0.0.1:{state.http_port}", "grpc": f"127.0.0.1:{state.grpc_port}"},
                    "revisions": [
                        {"revision": rev.name, "traffic": state.traffic.get(rev.name, 0), "ready": rev.ready_count,
                         "wanted": max(rev.plan.min_replicas, len(rev.replicas)),
                         "pids": [r.pid for r in rev.replicas if r.pid],
                         "ports": [list(r.ports) for r in rev.replicas if r.ports], "restarts": sum(r.restarts for r in rev.replicas)}
                        for rev in state.revisions.values()],
                })
            services.append({
                "name": plan.name, "namespace": plan.namespace, "problem": plan.problem,
                "url": f"http://{plan.name}.{plan.namespace}.localhost:{self.http_port}",
                "path_url": self.path_url(plan),
                "components": components, "key": key,
            })
        return {
            "pid": os.getpid(),
            "overlay": str(self.overlay),
            "ready": self.all_ready(),
            "gateway": {"pid": self.gateway.pid, "http_port": self.http_port, "grpc_port": self.grpc_port,
                        "generation": self.generation, "folder": str(self.gateway.folder),
                        "activator_pids": self.activator.pids,
                        "https_port": self.https_port if self.gateway_policy.tls else None,
                        "certificate": str(self.certificate[0]) if self.certificate else None},
            "logs": str(self.home / "logs"),
            "api": {"url": self.api.url, "kubeconfig": str(self.kubeconfig)} if self.api else None,
            "services": services,
        }

    def table(self) -> str:
        return format_table(self.state())

    def path_url(self, plan: ServicePlan) -> str:
        """The gateway's path route to a service."""
        return f"http://127.0.0.1:{self.http_port}/serving/{plan.namespace}/{plan.name}"

    def sample_calls(self) -> str:
        """A ready-to-paste call for each running service whose entry module has one."""
        from kubemind.local.services import up_sample_calls

        calls = up_sample_calls()
        lines = []
        for plan in self.services.values():
            entry = plan.components.get(plan.entry)
            state = self.components.get(entry.key) if entry else None
            call = calls.get(entry.module) if entry else None
            if state is None or state.problem or call is None:
                continue
            lines.append(f"\n== {plan.namespace}/{plan.name}\n{call(self.path_url(plan), f'127.0.0.1:{state.grpc_port}')}")
        return "\n" + "\n".join(lines) + "\n" if lines else ""


def format_problems(exc: SpecsRejected) -> str:
    from kubemind.manifests.reporting import format_text

    return format_text(exc.problems, 0).rsplit("\n", 1)[0]


def format_table(state: dict[str, Any]) -> str:
    """service, component, revision, traffic %, replicas ready/wanted, URL: one row per revision."""
    rows = [("SERVICE", "COMPONENT", "REVISION", "TRAFFIC", "READY", "URL")]
    for service in state.get("services", []):
        name = f"{service['namespace']}/{service['name']}"
        if service.get("problem"):
            rows.append((name, "-", "-", "-", "-", f"not run here: {service['problem']}"))
        for component in service.get("components", []):
            if component.get("problem"):
                rows.append((name, component["component"], component["latest"], "-", "-", component["problem"]))
            for revision in component["revisions"]:
                rows.append((name, component["component"], revision["revision"], f"{revision['traffic']}%",
                             f"{revision['ready']}/{revision['wanted']}", service["path_url"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows)
