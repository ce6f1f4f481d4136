"""Running a graph: KServe's four node types with its soft and hard dependencies, plus deadlines.

Semantics follow KServe's router (cmd/router/main.go), with the differences the issue asks for:

- Sequence: steps in order; a step gets the node's input, or the previous reply with
  `data: $response`; a step's `condition` is tested on the previous reply and, when it does not
  match, the sequence stops there and answers with that reply.
- Switch: the first step whose condition matches the node's input runs; none matching is a 400
  listing the conditions tried (KServe answers 404 without them).
- Ensemble: every step at once on the node's input; the reply is `{step name: reply}`. A failing
  hard step fails the node and the other branches are cancelled.
- Splitter: one step, picked at random by weight (the weights add up to 100).
- Hard step failing: the graph fails with that step's status, naming step and service. Soft step
  failing: the graph goes on without it (a sequence keeps the last reply it had) and the answer
  lists it under `skipped_steps`.
- Deadlines: each service step has its own (options > spec.routerTimeouts.serviceClient > the
  router's step_timeout_seconds), the graph one for everything (spec.timeout, at most the
  server's request deadline). A step past its deadline is a 504 naming it; past the graph's
  deadline whatever still runs, Ensemble branches included, is cancelled.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from kubemind.errors import BackendTimeout, InvalidInput, KubemindError
from kubemind.telemetry import RequestRecord, current_record
from kubemind.tracing import span
from kubemind_transformers.router.adapters import adapter_context, step_prompt, step_tensors
from kubemind_transformers.router.conditions import exists
from kubemind_transformers.router.graph import Graph, Node, Step
from kubemind_transformers.router.messages import Message
from kubemind_transformers.router.settings import RouterSettings
from kubemind_transformers.router.steps import (
    Call,
    ServiceClients,
    StepFailed,
    TextDeltas,
    call_grpc,
    call_llm,
    call_rest,
    sampling_of,
    stream_llm,
)


class NoBranchMatched(InvalidInput):
    """No condition of a Switch node matched its input."""


@dataclass(frozen=True)
class SkippedStep:
    step: str
    service: str
    status: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "service": self.service, "status": self.status, "reason": self.reason}


@dataclass
class Outcome:
    """What a node or step produced: a reply, or (the graph's last step, streamed) its deltas."""

    message: Message | None = None
    stream: TextDeltas | None = None


@dataclass
class GraphResult:
    message: Message | None
    stream: TextDeltas | None
    skipped: list[SkippedStep]
    replies: dict[str, Message]


@dataclass
class _Run:
    request: Message
    headers: dict[str, str]
    stream: bool
    deadline: float
    """time.monotonic() past which the graph is out of time."""
    record: RequestRecord | None
    """The request's access-log record: each step's time is a stage of it (`step.NAME`)."""
    replies: dict[str, Message] = field(default_factory=dict)
    skipped: list[SkippedStep] = field(default_factory=list)
    running: set[str] = field(default_factory=set)
    cancelled: set[str] = field(default_factory=set)


class GraphExecutor:
    def __init__(self, graph: Graph, settings: RouterSettings, clients: ServiceClients):
        self.graph = graph
        self.settings = settings
        self.clients = clients
        self.random = random.Random(settings.splitter_seed)
        self.deadline_seconds = min(graph.timeout_seconds or math.inf, settings.request_timeout_seconds)

    def address(self, step: Step) -> str:
        overridden = any(item.partition("=")[0] == step.service for item in self.settings.service_hosts)
        if step.service_url and not overridden:
            # KServe's serviceUrl names a path too (/v1/models/m:predict); the protocol picks its own.
            url = urlsplit(step.service_url)
            return url.netloc if step.options.protocol == "grpc-v2" else f"{url.scheme}://{url.netloc}"
        return self.settings.service_address(step.service, self.graph.namespace)

    def step_timeout(self, step: Step) -> float:
        return step.options.timeout_seconds or self.graph.step_timeout_seconds or self.settings.step_timeout_seconds

    async def run(
        self, request: Message, headers: dict[str, str], *, stream: bool = False, record: RequestRecord | None = None
    ) -> GraphResult:
        run = _Run(request, headers, stream, time.monotonic() + self.deadline_seconds, record or current_record())
        try:
            async with asyncio.timeout(self.deadline_seconds):
                outcome = await self._node(run, self.graph.root, request, final=True)
        except TimeoutError:
            still = ", ".join(sorted(run.running | run.cancelled)) or "none"
            raise BackendTimeout(
                f"graph '{self.graph.name}' did not finish within its {self.deadline_seconds:g} s deadline "
                f"(steps still running, now cancelled: {still})"
            ) from None
        stream_out = outcome.stream if outcome else None
        message = outcome.message if outcome else None
        return GraphResult(message, stream_out, run.skipped, run.replies)

    # -- nodes ------------------------------------------------------------------------------------
    async def _node(self, run: _Run, node: Node, data: Message, final: bool) -> Outcome | None:
        if node.router_type == "Sequence":
            return await self._sequence(run, node, data, final)
        if node.router_type == "Switch":
            view = data.view()
            for step in node.steps:
                if exists(view, step.condition):
                    return await self._step(run, step, data, final)
            tried = "; ".join(f"{step.name}: {step.condition}" for step in node.steps)
            raise NoBranchMatched(f"no branch of Switch node '{node.name}' in graph '{self.graph.name}' matched; conditions tried: {tried}")
        if node.router_type == "Ensemble":
            return await self._ensemble(run, node, data)
        return await self._step(run, self._split(node), data, final)

    async def _sequence(self, run: _Run, node: Node, data: Message, final: bool) -> Outcome | None:
        current: Message | None = None
        for index, step in enumerate(node.steps):
            if step.condition and not exists((current or data).view(), step.condition):
                return Outcome(current or data)  # KServe: a condition that does not hold ends the sequence
            step_data = current if step.data == "$response" and current is not None else data
            outcome = await self._step(run, step, step_data, final and index == len(node.steps) - 1)
            if outcome is None:
                continue  # a soft step was skipped: the next one sees the last reply there was
            if outcome.stream is not None:
                return outcome
            current = outcome.message
        return Outcome(current) if current is not None else None

    async def _ensemble(self, run: _Run, node: Node, data: Message) -> Outcome:
        tasks = [asyncio.create_task(self._step(run, step, data, final=False)) for step in node.steps]
        try:
            outcomes = await _all_or_first_failure(tasks)
        finally:
            # A failed hard branch or the graph's deadline: the others stop now (an LLM branch's
            # connection closes, which aborts its generation), before the graph answers.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        parts = {
            step.name: outcome.message
            for step, outcome in zip(node.steps, outcomes, strict=True)
            if outcome is not None and outcome.message is not None
        }
        return Outcome(Message.merged(parts))

    def _split(self, node: Node) -> Step:
        point, end = self.random.randrange(100), 0
        for step in node.steps:
            end += step.weight or 0
            if point < end:
                return step
        return node.steps[-1]

    # -- steps ------------------------------------------------------------------------------------
    async def _step(self, run: _Run, step: Step, data: Message, final: bool) -> Outcome | None:
        if step.node_name:
            try:
                return await self._node(run, self.graph.nodes[step.node_name], data, final)
            except KubemindError as exc:
                return self._failed(run, step, "", exc)
        address = self.address(step)
        limit = self.step_timeout(step)
        bounded = limit < run.deadline - time.monotonic()
        run.running.add(step.name)
        started = time.perf_counter()
        try:
            with span(f"step {step.name}", attributes={"kubemind.step": step.name, "kubemind.service": step.service,
                                                        "server.address": address, "kubemind.step_protocol": step.options.protocol}):  # fmt: skip
                if bounded:
                    async with asyncio.timeout(limit):
                        outcome = await self._call(run, step, data, address, limit, final)
                else:
                    outcome = await self._call(run, step, data, address, run.deadline - time.monotonic(), final)
        except asyncio.CancelledError:
            run.cancelled.add(step.name)  # the graph's deadline, or a failed sibling in an Ensemble
            raise
        except TimeoutError:
            return self._failed(run, step, address, BackendTimeout(f"did not answer within its {limit:g} s deadline"))
        except KubemindError as exc:
            if exc.status == HTTPStatus.GATEWAY_TIMEOUT and bounded and time.perf_counter() - started >= 0.9 * limit:
                # The client's own deadline (the same one, sent to the service) fired first.
                exc = BackendTimeout(f"did not answer within its {limit:g} s deadline")
            return self._failed(run, step, address, exc)
        finally:
            run.running.discard(step.name)
            if run.record is not None:
                run.record.add_stage(f"step.{step.name}", int((time.perf_counter() - started) * 1e9))
        if outcome.message is not None:
            run.replies[step.name] = outcome.message
        if outcome.stream is not None:
            until = min(run.deadline, time.monotonic() + limit - (time.perf_counter() - started))
            outcome.stream = _bounded(outcome.stream, until, step, address, limit)
        return outcome

    async def _call(self, run: _Run, step: Step, data: Message, address: str, timeout: float, final: bool) -> Outcome:
        context = adapter_context(run.request, data, run.replies)
        call = Call(address, run.headers, timeout, sampling_of(run.request.parameters) if final else {})
        if step.options.protocol == "grpc-v2":
            return Outcome(await call_grpc(self.clients, step, call, step_tensors(step, data, context)))
        if step.options.protocol == "v2":
            return Outcome(await call_rest(self.clients, step, call, step_tensors(step, data, context)))
        prompt = step_prompt(step, data, context)
        if final and run.stream:
            return Outcome(stream=await stream_llm(self.clients, step, call, prompt))
        return Outcome(await call_llm(self.clients, step, call, prompt))

    def _failed(self, run: _Run, step: Step, address: str, exc: KubemindError) -> Outcome | None:
        """Raise for a hard step; record a soft one as skipped (None: no outcome)."""
        if step.node_name and isinstance(exc, StepFailed):
            failure = exc  # a nested node's hard step: it already names itself
        else:
            at = f" at {address}" if address else ""
            failure = StepFailed(f"{step.label}{at} failed: {exc.message}", exc.status)
        if step.dependency == "Hard":
            raise failure
        run.skipped.append(SkippedStep(step.name, step.service or step.node_name, int(failure.status), failure.message))
        return None


async def _all_or_first_failure(tasks: list[asyncio.Task[Outcome | None]]) -> list[Outcome | None]:
    """Every result, or the first exception with the other tasks cancelled (the caller cancels)."""
    pending: set[asyncio.Task[Outcome | None]] = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    return [task.result() for task in tasks]


async def _bounded(deltas: TextDeltas, until: float, step: Step, address: str, limit: float) -> AsyncIterator[tuple[str, str | None]]:
    """The final step's stream, held to the step's and the graph's deadline."""
    try:
        while True:
            left = until - time.monotonic()
            try:
                item: Awaitable[tuple[str, str | None]] = anext(deltas)
                yield await asyncio.wait_for(item, timeout=max(left, 0.001))
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise StepFailed(
                    f"{step.label} at {address} did not finish streaming within its deadline ({limit:g} s)",
                    HTTPStatus.GATEWAY_TIMEOUT,
                ) from None
            except KubemindError as exc:
                raise StepFailed(f"{step.label} at {address} failed mid-stream: {exc.message}", exc.status) from None
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]


__all__ = ["GraphExecutor", "GraphResult", "NoBranchMatched", "SkippedStep", "StepFailed"]
