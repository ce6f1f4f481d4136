"""The kubemind model server: REST and gRPC on the configured host, and the model lifecycle.

KServe's ModelServer binds 0.0.0.0 and [::] unconditionally and reads argv at import; this
server takes a settings object, binds `settings.host` for both listeners, and owns the
lifecycle: models are loaded and started before the listeners open and stopped after they
close, so SIGTERM leaves no engine process behind. A background start that fails (an engine
that cannot load, a start timeout) stops the server and makes the process exit non-zero: a
process that is live but can never be ready would only hide the failure from its supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from typing import Protocol

import grpc
import uvicorn
from kserve.model import BaseKServeModel
from kserve.model_repository import ModelRepository

from kubemind.model import KubemindModel
from kubemind.protocol.generate import TextGenerator, generate_routes
from kubemind.protocol.grpc_server import create_grpc_server
from kubemind.protocol.http_guard import guarded_protocol
from kubemind.protocol.pipeline import Pipeline, Route, ServerRoute
from kubemind.protocol.rest import create_app
from kubemind.protocol.service import InferenceService
from kubemind.queue_metrics import InstrumentedExecutor, LoopLagMonitor
from kubemind.settings import ComponentSettings
from kubemind.telemetry import ServerMetrics, configure_logging
from kubemind.tracing import configure_tracing, shutdown_tracing

logger = logging.getLogger("kubemind.server")


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: KubemindServer decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio enables TCP_NODELAY on accepted connections only when the
    # listening socket's proto is IPPROTO_TCP. Without it Nagle's algorithm holds uvicorn's body
    # write until the client's delayed ACK: ~40 ms added to every keep-alive reply.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _grpc_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ServerExtension(Protocol):
    """Something a server hosts beyond its models (the async jobs writer): routes it declares for
    each model and for the server, on the same pipeline, and resources it opens and closes with
    the server's lifecycle."""

    def routes_for(self, model: BaseKServeModel) -> Sequence[Route]: ...

    def server_routes(self) -> Sequence[ServerRoute]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class KubemindServer:
    """Serves `models` over the Open Inference Protocol on REST and gRPC."""

    def __init__(
        self,
        settings: ComponentSettings,
        models: Sequence[BaseKServeModel],
        extensions: Sequence[ServerExtension] = (),
    ):
        if not models:
            raise ValueError("a server needs at least one model")
        self.settings = settings
        self.models = list(models)
        self.extensions = list(extensions)
        self.repository = ModelRepository()
        for model in self.models:
            self.repository.update(model)
        self.metrics = ServerMetrics(settings.revision)
        self.metrics.register_model_collectors(self.models)
        self.service = InferenceService(self.repository, settings.server_name)
        self.pipeline = Pipeline(self.service, self.metrics, settings)
        self.http_port = settings.http_port
        self.grpc_port = settings.grpc_port
        self._uvicorn: _Uvicorn | None = None
        self._rest_task: asyncio.Task[None] | None = None
        self._grpc: grpc.aio.Server | None = None
        self._engine_tasks: list[asyncio.Task[None]] = []
        self.start_failure: BaseException | None = None
        """Why a model's background start failed (or its engine died); set once, and the server
        then stops."""
        self.failed = asyncio.Event()
        self._watchdog: asyncio.Task[None] | None = None
        self._loop_lag = LoopLagMonitor(self.metrics.queues)

    def declared_routes(self) -> list[tuple[str, Route]]:
        """(model name, route) for every route beyond the v2 endpoints: the generate extension
        for text generators, and whatever each model declares."""
        routes: list[tuple[str, Route]] = []
        for model in self.models:
            if isinstance(model, TextGenerator):
                routes += [(self._name(model), route) for route in generate_routes()]
            if isinstance(model, KubemindModel):
                routes += [(model.name, route) for route in model.routes()]
            for extension in self.extensions:
                routes += [(self._name(model), route) for route in extension.routes_for(model)]
        return routes

    @staticmethod
    def _name(model: object) -> str:
        return str(getattr(model, "name", ""))

    def _watch_engine(self, model: BaseKServeModel, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        reason = "did not start in time" if isinstance(error, TimeoutError) else "failed to start"
        logger.error("model '%s' %s: %s", model.name, reason, error or type(error).__name__, exc_info=error)
        if self.start_failure is None:
            self.start_failure = error
        self.failed.set()

    async def _watch_failures(self) -> None:
        """Exit (through `failed`) once a model's engine has died for good."""
        while not self.failed.is_set():
            await asyncio.sleep(self.settings.failure_check_seconds)
            for model in self.models:
                reason = model.failure() if isinstance(model, KubemindModel) else None
                if reason:
                    logger.error("model '%s' cannot serve any more: %s; exiting so it is restarted", model.name, reason)
                    if self.start_failure is None:
                        self.start_failure = RuntimeError(reason)
                    self.failed.set()
                    return

    async def start(self) -> None:
        """Load and start the models, then open both listeners. Returns once they accept
        connections; models with an engine keep starting in the background."""
        loop = asyncio.get_running_loop()
        loop.set_default_executor(
            InstrumentedExecutor(self.metrics.queues, "default", self.settings.executor_workers, thread_name_prefix="kubemind")
        )
        self._loop_lag.start()
        for model in self.models:
            if not model.ready:
                model.load()
            model.start()
            if getattr(model, "engine", False):
                task = asyncio.create_task(model.start_engine())
                task.add_done_callback(functools.partial(self._watch_engine, model))
                self._engine_tasks.append(task)
        for extension in self.extensions:
            await extension.start()
        server_routes = [route for extension in self.extensions for route in extension.server_routes()]
        app = create_app(self.pipeline, self.declared_routes(), self.settings, server_routes)
        sock = _bind(self.settings.host, self.settings.http_port)
        self.http_port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(self.settings.grace_period_seconds),
            timeout_keep_alive=65,
            http=guarded_protocol(self.settings.header_read_timeout_seconds, self.settings.body_read_timeout_seconds),
        )
        self._uvicorn = _Uvicorn(config)
        self._rest_task = asyncio.create_task(self._uvicorn.serve(sockets=[sock]))
        if self.settings.enable_grpc:
            self._grpc = create_grpc_server(self.pipeline, self.settings)
            self.grpc_port = self._grpc.add_insecure_port(_grpc_address(self.settings.host, self.settings.grpc_port))
            await self._grpc.start()
        self._watchdog = asyncio.create_task(self._watch_failures())
        while not self._uvicorn.started:
            if self._rest_task.done():
                self._rest_task.result()  # re-raise why uvicorn could not start
            await asyncio.sleep(0.01)
        await self.pipeline.payloads.start(f"http://{_grpc_address(self.settings.host, self.http_port)}/")
        logger.info(
            "serving %s on http://%s:%d (grpc %s)",
            ", ".join(m.name for m in self.models),
            self.settings.host,
            self.http_port,
            _grpc_address(self.settings.host, self.grpc_port) if self._grpc else "off",
        )

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (grace period), then stop the models."""
        grace = self.settings.grace_period_seconds
        # Open streams get most of the grace period to finish, then a final event: uvicorn
        # cuts whatever is still running at the grace limit, mid-stream and with a traceback.
        self.pipeline.drain(grace * 0.8)
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._rest_task is not None:
            await self._rest_task
        await self.pipeline.payloads.stop()  # after the listeners: every answered request's events are queued
        for model in self.models:
            model.stop()
            if getattr(model, "engine", False):
                model.stop_engine()
            if isinstance(model, KubemindModel):
                await model.stop_async()
        for extension in self.extensions:
            await extension.stop()
        self.service.shared_memory.close()
        await self._loop_lag.stop()
        for task in self._engine_tasks:
            task.cancel()
        logger.info("stopped")


async def serve_until_signalled(server: KubemindServer) -> int:
    """Serve until SIGTERM/SIGINT (exit code 0) or a failed model start (exit code 1)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    waits = [asyncio.create_task(stop.wait()), asyncio.create_task(server.failed.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()
    await server.stop()
    return 1 if server.start_failure is not None else 0


def run(
    settings: ComponentSettings, models: Sequence[BaseKServeModel], extensions: Sequence[ServerExtension] = ()
) -> None:
    """Serve `models` until SIGTERM/SIGINT; the blocking entry point of every component's main().

    A failed start exits with status 1 at once: a thread still loading weights must not keep
    the process alive after its supervisor was told it failed.
    """
    configure_logging()
    provider = configure_tracing(settings.model_name)
    try:
        code = asyncio.run(serve_until_signalled(KubemindServer(settings, models, extensions)))
    finally:
        shutdown_tracing(provider)  # the batch processor still holds the last spans
    if code:
        logging.shutdown()
        sys.stderr.flush()
        os._exit(code)
