"""The local gateway: nginx (Debian's package) configured from the InferenceServices.

Why nginx and not HAProxy: nginx 1.22 has everything the Istio objects ask for built in or one
Debian module away (`split_clients` for the canary, `mirror` for shadow traffic, `limit_req`,
`grpc_pass` for h2c, `auth_request` for JWT), while HAProxy 2.6 has no request mirroring.

Layout of the generated configuration:
- one upstream per revision and protocol (`REVISION-http`, `REVISION-grpc`), its replicas
  round-robin with passive health checks (a refused connection marks a replica failed for
  FAIL_TIMEOUT and the request goes to the next one);
- one `split_clients` per component choosing a revision per request (a random request id, so
  each request is an independent draw with the canary's probability);
- per component a REST and a gRPC listener, the local stand-in for its cluster Service
  (`NAME-predictor.NAMESPACE`): a transformer's --predictor_host points there;
- the ingress: REST by path (`/serving/NAMESPACE/NAME/...`) or by Host (`NAME.NAMESPACE.localhost`,
  `NAME.NAMESPACE.svc.cluster.local`, ...), gRPC by :authority, to each service's entry component
  (its transformer if it has one). Every response names its revision in `x-kubemind-revision`.
- the VirtualServices' hosts (policy.py), REST only: one server each, a location per route
  prefix; a route's `mirror` is nginx's `mirror` to an internal location proxying the copy to
  the shadow's entry, or to one revision's upstream when the mirror host is a Knative revision's
  Service (the release controller's shadow phase); nginx discards the copy's response. A
  `split_clients` per route draws `mirrorPercentage` (each request an independent draw).
  Mirroring is REST only.
- JWT (jwt.py): `auth_request` to the verifier in `up` on every ingress route when a
  RequestAuthentication applies (only requests that carry an Authorization header are asked
  about), and on every VirtualService route when an AuthorizationPolicy does; 401 and 403 get
  Istio's bodies.
A change is written, checked with `nginx -t` and applied with SIGHUP: the old workers finish the
requests they hold, so a reload drops nothing in flight.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kubemind.errors import KubemindError
from kubemind.local.up.activator import REVISION_HEADER as ACTIVATE_HEADER
from kubemind.local.up.jwt import DENIED, EDGE_HEADER, HOST_HEADER, UNAUTHENTICATED
from kubemind.local.up.policy import GatewayPolicy
from kubemind.processes import die_with_parent

FAIL_TIMEOUT_SECONDS = 2
GENERATION_PATH = "/.kubemind/generation"
WORKER_SHUTDOWN_SECONDS = 10
# Attempts per request (the first and one retry): the retry budget.
RETRY_TRIES = 2


class GatewayError(KubemindError):
    """nginx is missing, rejects the generated configuration or does not start."""


@dataclass(frozen=True)
class RevisionRoute:
    revision: str
    percent: int
    replicas: tuple[tuple[int, int], ...]
    """(REST port, gRPC port) of each replica."""
    activator: tuple[int, int] | None = None
    """(REST, gRPC) ports where requests go while a scaled-to-zero revision has no replica."""


@dataclass(frozen=True)
class ComponentRoute:
    key: str
    """`namespace/service/component`."""
    revisions: tuple[RevisionRoute, ...]
    http_port: int
    grpc_port: int


@dataclass(frozen=True)
class ServiceRoute:
    name: str
    namespace: str
    entry: str
    """ComponentRoute.key of the component the ingress sends this service's requests to."""

    @property
    def hosts(self) -> tuple[str, ...]:
        base = f"{self.name}.{self.namespace}"
        return (f"{base}.localhost", f"{base}.svc.cluster.local", f"{base}.svc", base, f"{base}.example.com")

    @property
    def path_prefix(self) -> str:
        return f"/serving/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class HostRoute:
    """A VirtualService route, resolved to the services `up` runs."""

    hosts: tuple[str, ...]
    prefix: str
    entry: str
    """ComponentRoute.key the route's requests go to."""
    source: str
    mirror: str | None = None
    """ComponentRoute.key of the shadow the route's requests are copied to."""
    mirror_percent: float = 100.0
    mirror_revision: str | None = None
    """Or the one revision they are copied to (a Knative revision's Service as the mirror host:
    the release controller's shadow phase)."""

    @property
    def mirrored(self) -> bool:
        return bool(self.mirror or self.mirror_revision) and self.mirror_percent > 0


@dataclass(frozen=True)
class GatewayConfig:
    http_port: int
    grpc_port: int
    generation: int
    components: tuple[ComponentRoute, ...] = ()
    services: tuple[ServiceRoute, ...] = ()
    folder: Path = field(default=Path("."))
    policy: GatewayPolicy = field(default_factory=GatewayPolicy)
    https_port: int = 0
    certificate: tuple[Path, Path] | None = None
    """(certificate, key) for the HTTPS listener, when the policy asks for TLS."""
    host_routes: tuple[HostRoute, ...] = ()
    verifier_port: int = 0
    """jwt.Verifier's port, when the policy checks requests."""

    @property
    def https_listen(self) -> list[str]:
        """The ingress REST servers' extra listener for TLS (none without a Gateway asking for it)."""
        if not (self.policy.tls and self.certificate and self.https_port):
            return []
        return [f"    listen 127.0.0.1:{self.https_port} ssl;"]


def _variable(key: str) -> str:
    return "kubemind_" + "".join(ch if ch.isalnum() else "_" for ch in key)


def _upstreams(component: ComponentRoute) -> list[str]:
    lines = []
    for revision in component.revisions:
        for protocol, index in (("http", 0), ("grpc", 1)):
            lines.append(f"  upstream {revision.revision}-{protocol} {{")
            for ports in revision.replicas:
                lines.append(f"    server 127.0.0.1:{ports[index]} max_fails=1 fail_timeout={FAIL_TIMEOUT_SECONDS}s;")
            if not revision.replicas and revision.activator:
                lines.append(f"    server 127.0.0.1:{revision.activator[index]};  # scaled to zero")
            elif not revision.replicas:  # nothing to send to (502, i.e. UNAVAILABLE)
                lines.append("    server 127.0.0.1:9 down;")
            lines += ["    keepalive 16;", "  }"]
    return lines


def _split(component: ComponentRoute) -> list[str]:
    """Canary first, the rest (`*`) to the stable revision; 0% revisions get nothing."""
    weighted = [r for r in component.revisions if r.percent > 0]
    lines = [f'  split_clients "${{request_id}}" ${_variable(component.key)} {{']
    for revision in weighted[1:]:
        lines.append(f"    {revision.percent}% {revision.revision};")
    stable = weighted[0].revision if weighted else component.revisions[0].revision
    lines += [f"    * {stable};", "  }"]
    return lines


def _rest_location(target: str, prefix: str = "", guards: list[str] | None = None, *,
                   location: str | None = None) -> list[str]:
    """`guards`: the rate limit, auth and mirror lines of the route. `location`: the nginx
    location as given (no rewrite), instead of the `prefix/` the path routes strip."""
    lines = [f"    location {location or prefix or '/'}{'/' if prefix and not location else ''} {{", *(guards or [])]
    if prefix and not location:
        lines.append(f"      rewrite ^{prefix}(/.*)$ $1 break;")
    lines += [
        f"      add_header x-kubemind-revision ${target} always;",
        # Tells the activator which revision to wake when it is the one answering. (A
        # location's proxy_set_header replaces the inherited ones: all three are here.)
        f"      proxy_set_header {ACTIVATE_HEADER} ${target};",
        '      proxy_set_header Connection "";',
        "      proxy_set_header Host $host;",
        f"      proxy_pass http://${target}-http;",
        "    }",
    ]
    return lines


def _grpc_location(target: str, guards: list[str] | None = None) -> list[str]:
    return [
        "    location / {",
        *(guards or []),
        f"      add_header x-kubemind-revision ${target} always;",
        f"      grpc_set_header {ACTIVATE_HEADER} ${target};  # for the activator, as over REST",
        f"      grpc_pass grpc://${target}-grpc;",
        "    }",
    ]


AUTHN_PATH = "/.kubemind/authn"
AUTHZ_PATH = "/.kubemind/authz"


def _auth_guard(path: str) -> list[str]:
    return [f"      auth_request {path};",
            "      error_page 401 @kubemind_unauthenticated;",
            "      error_page 403 @kubemind_denied;"]


def _auth_locations(config: GatewayConfig, edge: bool) -> list[str]:
    """The internal locations auth_request asks (jwt.Verifier), and Istio's 401/403 answers."""
    if not config.verifier_port:
        return []
    lines = [f"    location = {AUTHZ_PATH if edge else AUTHN_PATH} {{", "      internal;"]
    if not edge:  # RequestAuthentication alone: a request without a token passes unasked
        lines.append('      if ($http_authorization = "") { return 200; }')
    lines += ["      proxy_pass_request_body off;",
              '      proxy_set_header Content-Length "";',
              '      proxy_set_header Connection "";',
              f"      proxy_set_header {HOST_HEADER} $host;",
              f"      proxy_set_header {EDGE_HEADER} {int(edge)};",
              "      proxy_pass http://kubemind_verifier/check;",
              "    }",
              "    location @kubemind_unauthenticated {",
              "      add_header www-authenticate 'Bearer realm=\"http://$host$request_uri\", error=\"invalid_token\"'"
              " always;",
              f'      return 401 "{UNAUTHENTICATED}\\n";',
              "    }",
              f'    location @kubemind_denied {{ return 403 "{DENIED}\\n"; }}']
    return lines


def _mirror_variable(index: int) -> str:
    return f"kubemind_mirror_{index}"


def _host_servers(config: GatewayConfig, ingress_limit: list[str]) -> list[str]:
    """One REST server per VirtualService host set, a location per route prefix."""
    lines: list[str] = []
    by_hosts: dict[tuple[str, ...], list[tuple[int, HostRoute]]] = {}
    for index, route in enumerate(config.host_routes):
        by_hosts.setdefault(route.hosts, []).append((index, route))
    for index, route in enumerate(config.host_routes):
        if route.mirrored and route.mirror_percent < 100:
            lines += [f'  split_clients "${{request_id}}" ${_mirror_variable(index)} {{  # mirrorPercentage',
                      f"    {round(route.mirror_percent, 2):g}% 1;", '    * "";', "  }"]
    authz = _auth_guard(AUTHZ_PATH) if config.verifier_port else []
    for hosts, routes in by_hosts.items():
        sources = sorted({route.source for _, route in routes})
        lines += [f"  server {{  # ingress REST, {', '.join(sources)}", f"    listen 127.0.0.1:{config.http_port};",
                  *config.https_listen, f"    server_name {' '.join(hosts)};", *_auth_locations(config, edge=True)]
        seen = set()
        for index, route in routes:
            if route.prefix in seen:
                continue  # Istio takes the first route that matches
            seen.add(route.prefix)
            guards = [*authz, *ingress_limit]
            if route.mirrored:
                guards.append(f"      mirror /.kubemind/mirror/{index};")
            lines += _rest_location(_variable(route.entry), guards=guards, location=route.prefix)
            if route.mirrored:
                # A service's revision is drawn per request (its split variable); a revision is fixed.
                shadow = route.mirror_revision or f"${_variable(route.mirror or '')}"
                lines += [f"    location = /.kubemind/mirror/{index} {{  # to {route.mirror_revision or route.mirror};"
                          " nginx drops its answer", "      internal;"]
                if route.mirror_percent < 100:
                    lines.append(f'      if (${_mirror_variable(index)} = "") {{ return 204; }}')
                lines += ["      proxy_set_header Host $host-shadow;  # as Envoy marks a mirrored request",
                          f"      proxy_set_header {ACTIVATE_HEADER} {shadow};",
                          '      proxy_set_header Connection "";',
                          f"      proxy_pass http://{shadow}-http$request_uri;",
                          "    }"]
        if "/" not in seen:
            lines.append(f'    location / {{ return 404 "no route of {", ".join(sources)} matches $uri\n"; }}')
        lines.append("  }")
    return lines


def render_config(config: GatewayConfig) -> str:
    """The nginx.conf for these routes (pure: the tests read it, nginx -t checks it)."""
    folder = config.folder
    user = [f"user {getpass.getuser()};"] if os.geteuid() == 0 else []  # else workers run as nobody
    lines = [
        "# Generated by `kubemind up` from the rendered InferenceServices; rewritten on every change.",
        *user,
        "worker_processes 1;",
        # A reload waits for the old workers (see NginxGateway.apply); a stream cannot hold one
        # past this.
        f"worker_shutdown_timeout {WORKER_SHUTDOWN_SECONDS}s;",
        f"pid {folder / 'nginx.pid'};",
        f"error_log {folder / 'error.log'} notice;",
        "events { worker_connections 1024; }",
        "http {",
        "  log_format kubemind '$remote_addr \"$request\" $status host=$host upstream=$upstream_addr"
        " rt=$request_time';",
        f"  access_log {folder / 'access.log'} kubemind;",
        "  client_max_body_size 0;  # the servers enforce max_request_bytes themselves",
        "  proxy_http_version 1.1;",
        "  proxy_buffering off;  # streamed responses (SSE, chunked) pass as they come",
        "  proxy_request_buffering off;",
        "  proxy_read_timeout 600s;",
        "  grpc_read_timeout 600s;",
        "  grpc_send_timeout 600s;",
        # One retry on another replica when a connection fails, POSTs included: an inference is
        # a pure function of its inputs and job submissions are idempotent by job id, and a
        # pooled connection to a replica that just died fails only after the request is sent.
        "  proxy_next_upstream error timeout non_idempotent;",
        "  grpc_next_upstream error timeout non_idempotent;",
        f"  proxy_next_upstream_tries {RETRY_TRIES};",
        f"  grpc_next_upstream_tries {RETRY_TRIES};",
    ]
    if config.https_listen and config.certificate and config.policy.tls:
        lines += [f"  # TLS of {config.policy.tls.source}, with the local certificate",
                  f"  ssl_certificate {config.certificate[0]};",
                  f"  ssl_certificate_key {config.certificate[1]};",
                  f"  ssl_protocols {' '.join(v for v in ('TLSv1.2', 'TLSv1.3') if v >= config.policy.tls.min_protocol)};"]
    limit = config.policy.rate_limit
    ingress_limit: list[str] = []
    if limit:
        # One key for every request: one bucket for the whole gateway, REST and gRPC.
        lines += [f"  # the local rate limit of {limit.source}",
                  "  map $server_addr $kubemind_bucket { default gateway; }",
                  f"  limit_req_zone $kubemind_bucket zone=kubemind_gateway:1m rate={_rate(limit.requests_per_second)};",
                  "  limit_req_status 429;"]
        ingress_limit = [f"      limit_req zone=kubemind_gateway burst={limit.burst} nodelay;"]
    if config.verifier_port:
        lines += ["  upstream kubemind_verifier {  # jwt.Verifier in kubemind up",
                  f"    server 127.0.0.1:{config.verifier_port};", "    keepalive 8;", "  }"]
    authn = _auth_guard(AUTHN_PATH) if config.verifier_port and config.policy.jwt_rules else []
    local_guards = [*authn, *ingress_limit]
    local_auth = _auth_locations(config, edge=False) if authn else []
    for component in config.components:
        lines += _upstreams(component)
        lines += _split(component)
        target = _variable(component.key)
        lines += [f"  server {{  # {component.key} REST", f"    listen 127.0.0.1:{component.http_port};",
                  *_rest_location(target), "  }"]
        lines += [f"  server {{  # {component.key} gRPC", f"    listen 127.0.0.1:{component.grpc_port} http2;",
                  *_grpc_location(target), "  }"]
    lines += [
        "  server {  # ingress REST, by path",
        f"    listen 127.0.0.1:{config.http_port} default_server;",
        *(line.replace(" ssl;", " ssl default_server;") for line in config.https_listen),
        f'    location = {GENERATION_PATH} {{ return 200 "{config.generation}\\n"; }}',
        "    location / { return 404 \"no InferenceService is routed at host $host path $uri\\n\"; }",
        *local_auth,
    ]
    for service in config.services:
        lines += _rest_location(_variable(service.entry), service.path_prefix, local_guards)
    lines.append("  }")
    # Before the services' own host servers: a VirtualService naming one of those hosts owns it.
    lines += _host_servers(config, ingress_limit)
    for service in config.services:
        lines += [f"  server {{  # ingress REST, {service.namespace}/{service.name} by host",
                  f"    listen 127.0.0.1:{config.http_port};", *config.https_listen,
                  f"    server_name {' '.join(service.hosts)};", *local_auth,
                  *_rest_location(_variable(service.entry), guards=local_guards), "  }"]
    for index, service in enumerate(config.services):
        # The only service also takes gRPC calls without its :authority (a plain host:port).
        default = " default_server" if index == 0 and len(config.services) == 1 else ""
        lines += [f"  server {{  # ingress gRPC, {service.namespace}/{service.name}",
                  f"    listen 127.0.0.1:{config.grpc_port} http2{default};",
                  f"    server_name {' '.join(service.hosts)};", *local_auth,
                  *_grpc_location(_variable(service.entry), local_guards), "  }"]
    if len(config.services) != 1:
        lines += ["  server {  # ingress gRPC, unknown :authority",
                  f"    listen 127.0.0.1:{config.grpc_port} http2 default_server;",
                  "    location / {",
                  '      add_header grpc-status 5 always;  # NOT_FOUND',
                  '      add_header grpc-message "no InferenceService is routed at this authority" always;',
                  "      default_type application/grpc;",
                  "      return 200;",
                  "    }",
                  "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _rate(per_second: float) -> str:
    """nginx takes whole requests per second or per minute."""
    return f"{per_second:g}r/s" if per_second == int(per_second) else f"{round(per_second * 60)}r/m"


def _children(pid: int) -> set[int]:
    """The live child processes of `pid` (nginx's workers of its master)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None)
    if not found:
        raise GatewayError("nginx not found: install Debian's nginx package (`make install` does:"
                           " requirements/apt.txt)")
    return found


class Nginx:
    """The nginx master as a child process (dies with `kubemind up`), reloaded by SIGHUP."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.conf = folder / "nginx.conf"
        self.process: subprocess.Popen[bytes] | None = None
        self.http_port = 0
        self.applied: GatewayConfig | None = None
        """The configuration nginx serves, its generation left out."""

    def _command(self, conf: Path, *extra: str) -> list[str]:
        # -p: temp folders under ours; -e: the error log nginx opens before reading the config.
        return [nginx_binary(), "-p", str(self.folder), "-c", str(conf), "-e", str(self.folder / "error.log"), *extra]

    def _check(self, text: str) -> Path:
        candidate = self.folder / "nginx.conf.new"
        candidate.write_text(text)
        result = subprocess.run(self._command(candidate, "-t", "-q"), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise GatewayError(f"nginx rejects the generated configuration ({candidate}): {result.stderr.strip()}")
        return candidate

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def apply(self, config: GatewayConfig) -> None:
        """Start nginx, or reload it, with `config`; returns once the new generation answers.
        A configuration equal to the one served (but for its generation) changes nothing: no
        reload, whose closing of idle keep-alive connections clients would see for nothing
        (a rollout's annotation writes re-apply the specs every tick)."""
        served = dataclasses.replace(config, generation=0)
        if self.process is not None and self.process.poll() is None and served == self.applied:
            return
        self._apply(config)
        self.applied = served  # once nginx serves it: a refused one is tried again

    def _apply(self, config: GatewayConfig) -> None:
        self.http_port = config.http_port
        candidate = self._check(render_config(config))
        candidate.replace(self.conf)
        if self.process is None or self.process.poll() is not None:
            log = (self.folder / "nginx.out").open("ab")
            self.process = subprocess.Popen(self._command(self.conf, "-g", "daemon off;"), stdout=log,
                                            stderr=subprocess.STDOUT, preexec_fn=die_with_parent())
            log.close()
            self._wait_for_generation(config.generation)
            return
        old_workers = _children(self.process.pid)
        os.kill(self.process.pid, signal.SIGHUP)
        self._wait_for_generation(config.generation)
        # Until the old workers exit they still answer requests that arrive on the keep-alive
        # connections they hold, with the old routes: the change is in effect only after that.
        self._wait_for_exit(old_workers, WORKER_SHUTDOWN_SECONDS + 5)

    @staticmethod
    def _wait_for_exit(pids: set[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            pids = {pid for pid in pids if Path(f"/proc/{pid}").exists()}
            time.sleep(0.05)

    def _wait_for_generation(self, generation: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}{GENERATION_PATH}"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise GatewayError(f"nginx exited with {self.process.returncode}: "
                                   f"{(self.folder / 'error.log').read_text(errors='replace')[-2000:]}")
            try:
                answer = httpx.get(url, timeout=0.5)
                if answer.status_code == 200 and answer.text.strip() == str(generation):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise GatewayError(f"nginx did not serve configuration {generation} within {timeout}s; see"
                           f" {self.folder / 'error.log'}")

    def stop(self) -> None:
        """SIGQUIT: nginx's graceful shutdown (in-flight requests finish), then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGQUIT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
