"""Replicas: one supervised `python -m MODULE` process each, on loopback ports of its own.

A replica that exits is restarted on the same ports with exponential backoff (1 s, 2 s, ... 30 s),
so the gateway configuration does not change; meanwhile nginx's passive health check
(max_fails) keeps requests off it. Readiness is the server's own /v2/health/ready, polled
without blocking the runner's loop, which watches every replica at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kubemind.local.up.specs import ComponentPlan
from kubemind.processes import PortInUse, ServerProcess, check_port_free, spawn_server

MAX_BACKOFF_SECONDS = 30.0
# A replica that stayed up this long is healthy again: its next crash restarts after 1 s.
STABLE_SECONDS = 60.0

Report = Callable[[str], None]


@dataclass
class Replica:
    revision: str
    index: int
    module: str
    args: tuple[str, ...]
    env: dict[str, str]
    log_path: Path
    ready_timeout: float
    report: Report
    server: ServerProcess | None = None
    ports: tuple[int, int] | tuple[()] = ()
    """(REST, gRPC), fixed at the first start: a restart keeps them, so the gateway's do too."""
    ready: bool = False
    restarts: int = 0
    started_at: float = 0.0
    restart_at: float | None = None
    moved: bool = False
    """Restarted on new ports: the gateway must be told (the runner reloads it and clears this)."""

    @property
    def name(self) -> str:
        return f"{self.revision}-{self.index}"

    @property
    def pid(self) -> int | None:
        return self.server.pid if self.server else None

    def start(self) -> None:
        self.server = spawn_server(self.module, self.args, self.log_path, self.env, self.ports)
        self.ports = (self.server.http_port, self.server.grpc_port)
        self.ready = False
        self.started_at = time.monotonic()
        self.restart_at = None

    def poll(self) -> None:
        """One supervision step: restart when due, notice an exit, notice readiness."""
        now = time.monotonic()
        if self.server is None:
            if self.restart_at is not None and now >= self.restart_at:
                taken = self._ports_taken()
                if taken:
                    # Another process bound one of them meanwhile (one chosen for a child at the
                    # same moment): on the same ports this replica would never start again.
                    self.report(f"{self.name}: port {taken} is taken by another process; moving to new ports")
                    self.ports, self.moved = (), True
                self.report(f"{self.name}: restarting (restart {self.restarts})")
                self.start()
            return
        code = self.server.process.poll()
        if code is None and not self.ready and now - self.started_at > self.ready_timeout:
            self.report(f"{self.name}: not ready after {self.ready_timeout:.0f}s; see {self.log_path}")
            code = self.server.stop()
        if code is not None:
            self._exited(code, now)
        elif not self.ready and self._answers_ready():
            self.ready = True
            self.report(f"{self.name}: ready on REST :{self.server.http_port} gRPC :{self.server.grpc_port}"
                        f" ({now - self.started_at:.1f}s)")

    def _exited(self, code: int, now: float) -> None:
        if now - self.started_at > STABLE_SECONDS:
            self.restarts = 0
        self.restarts += 1
        delay = min(MAX_BACKOFF_SECONDS, 2.0 ** (self.restarts - 1))
        self.report(f"{self.name}: exited with {code}; restarting in {delay:.0f}s (log: {self.log_path})")
        self.server = None
        self.ready = False
        self.restart_at = now + delay

    def _ports_taken(self) -> int | None:
        for port in self.ports:
            try:
                check_port_free(port)
            except PortInUse:
                return port
        return None

    def activity(self) -> tuple[float, float] | None:
        """(requests answered so far, requests in flight) from kubemind's metrics on the REST
        port; None when the server does not serve them there (starting, or a native server such
        as stock Triton, whose metrics port differs): never counted as idle."""
        if self.server is None or not self.ready:
            return None
        try:
            response = httpx.get(f"{self.server.http_url}/metrics", timeout=0.5)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        text = response.text
        return _metric_sum(text, "kubemind_requests_total"), _metric_sum(text, "kubemind_requests_in_flight")

    def _answers_ready(self) -> bool:
        assert self.server is not None
        try:
            return httpx.get(f"{self.server.http_url}/v2/health/ready", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.restart_at = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.ready = False


def _metric_sum(exposition: str, name: str) -> float:
    """The sum over every label set of one metric in a Prometheus text exposition."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
    return total


@dataclass
class Revision:
    """The replicas of one ComponentPlan."""

    plan: ComponentPlan
    replicas: list[Replica] = field(default_factory=list)
    args: tuple[str, ...] | None = None
    """The replicas' args, with the local model folder: resolved at the first replica's start
    (for minReplicas 0, at the first request)."""
    activated: bool = False
    """A scaled-to-zero revision whose replica is ready and in the gateway's routes."""
    served: float = -1.0
    """Requests its replicas had answered at the last idle check."""
    idle_since: float = 0.0
    """When its replicas last answered or held a request (scale to zero counts from here)."""

    @property
    def name(self) -> str:
        return self.plan.revision

    @property
    def ready_count(self) -> int:
        return sum(replica.ready for replica in self.replicas)

    @property
    def ready(self) -> bool:
        return self.ready_count >= self.plan.min_replicas

    def poll(self) -> None:
        for replica in self.replicas:
            replica.poll()

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()
