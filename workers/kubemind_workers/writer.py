"""The job writer: `POST /v2/models/{model}/jobs` and `GET /v2/jobs/{id}` on the one request pipeline.

A job request is the model's v2 infer body plus a `callback_url`, or an image upload: a
`multipart/form-data` body with the file in part `image` and `callback_url` as a form field, or the
raw image as the body (`Content-Type: image/jpeg`, `image/png`, ...) with `?callback_url=`. An
upload is decoded, checked and resized by the image transformer's own preprocessing (the same
formats and pixel limit) into the model's UINT8 [1, image_size, image_size, 3] input
`image_input_name`, so the stored job is a plain v2 request the worker runs unchanged. Either way
the request is decoded and validated exactly as a synchronous infer (the v2 codecs, then the
model's own `validate_request`), so bad input gets the same 400 before anything is written.

When is a job acknowledged (202)? Only once it is committed and its message published (the
broker confirmed it). The job row and its outbox message are one transaction, so a crash
between commit and publish loses nothing: the relay publishes it. While the broker is known to
be down the writer answers 503 and writes nothing — it does not accept work the async path
cannot start (the client retries; an Idempotency-Key makes that retry safe). A broker that fails
between that check and the publish (it went down, or hangs without confirming) gets a 503 too,
naming the job: the row stays in the outbox, the relay publishes it once the broker is back, and
the job runs and calls back; a retry with the same Idempotency-Key answers 202 with that job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from kserve.model import BaseKServeModel
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response

from kubemind.codecs import binary_rest_request, decode_rest_request
from kubemind.errors import BackendUnavailable, InvalidInput, InvalidSettings, UnsupportedMediaType
from kubemind.model import KubemindModel
from kubemind.protocol.pipeline import (
    Route,
    RouteCall,
    ServerRoute,
    is_upload,
    json_response,
    media_type,
)
from kubemind.telemetry import RequestRecord
from kubemind.tracing import SpanKind, inject, remote_parent, span
from kubemind_transformers.image.preprocessing import ImagePreprocessor
from kubemind_workers.brokers import Broker, open_broker
from kubemind_workers.callback_urls import CallbackPolicy
from kubemind_workers.errors import BrokerUnavailable, JobNotFound
from kubemind_workers.settings import JobWriterSettings
from kubemind_workers.status_cache import StatusCache
from kubemind_workers.store import JobStore, StoredRequest

logger = logging.getLogger("kubemind.workers.writer")

IDEMPOTENCY_HEADER = "idempotency-key"
RELAY_BATCH = 100
MAX_IDEMPOTENCY_KEY = 200
IMAGE_FIELD = "image"
"""The form part (multipart uploads) holding the image; also what errors about the image name."""
CALLBACK_FIELD = "callback_url"


def _messaging(topic: str, job_id: str) -> dict[str, str]:
    return {"messaging.destination.name": topic, "messaging.message.id": job_id, "kubemind.job_id": job_id}


class OutboxRelay:
    """Publishes committed jobs whose message is not confirmed yet (the writer's publish failed,
    or the writer died between commit and publish). A message published twice is harmless: the
    worker's claim finds the job finished, or fences the older attempt."""

    def __init__(self, store: JobStore, broker: Broker, topic: str, interval: float, timeout: float, requeue_after: float):
        self.store = store
        self.broker = broker
        self.topic = topic
        """The broker's topic: the relay takes only this topic's messages."""
        self.interval = interval
        self.timeout = timeout
        self.requeue_after = requeue_after
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def relay_once(self) -> int:
        requeued = await self.store.requeue_stuck(self.requeue_after)
        if requeued:
            logger.warning("%d unfinished jobs idle for %gs: publishing them again", requeued, self.requeue_after)
        published: list[int] = []
        async with self.store.unpublished(RELAY_BATCH, self.timeout, self.topic) as batch:
            for message in batch.messages:
                try:
                    parent = remote_parent(message.payload.get("trace_context"))
                    with span(f"publish {message.topic}", SpanKind.PRODUCER, _messaging(message.topic, message.job_id), parent):
                        await self.broker.publish(message.job_id, message.payload, self.timeout)
                except BackendUnavailable:
                    break  # the broker is down: try again on the next tick, in order
                published.append(message.id)
            if published:
                await batch.mark_published(published)
        return len(published)

    async def _run(self) -> None:
        while True:
            try:
                await self.relay_once()
            except Exception as exc:
                logger.warning("outbox relay: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.interval)


class JobWriter:
    """A server extension (kubemind.server.ServerExtension): the jobs routes and their resources."""

    def __init__(self, settings: JobWriterSettings):
        if settings.broker == "cloudevents":
            raise InvalidSettings("--broker cloudevents is for workers; the writer publishes to kafka or rabbitmq")
        self.settings = settings
        self.store = JobStore(settings.database_url, max_size=settings.database_pool_size)
        self.cache = StatusCache(settings.redis_url, settings.redis_prefix, settings.status_ttl_seconds)
        self.broker = open_broker(settings, consumer=False)
        self.policy = CallbackPolicy(settings.callback_allow_list)
        self.preprocessor = ImagePreprocessor(settings)
        self.relay = OutboxRelay(
            self.store,
            self.broker,
            settings.topic,
            settings.relay_interval_seconds,
            settings.publish_timeout_seconds,
            settings.requeue_after_seconds,
        )

    async def start(self) -> None:
        await self.store.open()
        await self.cache.open()
        try:
            await self.broker.start()
        except Exception as exc:  # the relay and health checks reconnect; the writer answers 503 meanwhile
            logger.warning("broker not reachable at start: %s: %s", type(exc).__name__, exc)
        self.relay.start()

    async def stop(self) -> None:
        await self.relay.stop()
        await self.broker.stop()
        await self.cache.close()
        await self.store.close()

    def routes_for(self, model: BaseKServeModel) -> Sequence[Route]:
        return [Route("POST", "/v2/models/{model_name}/jobs", "jobs_submit", self.submit, uploads=True)]

    def server_routes(self) -> Sequence[ServerRoute]:
        return [ServerRoute("GET", "/v2/jobs/{job_id}", "jobs_status", self.status)]

    async def submit(self, call: RouteCall) -> Response:
        if is_upload(call.request):
            callback, image = await self._upload(call.request)
            callback_url = await self.policy.check(callback)
            request = await self._image_request(call.model, image)
        else:
            body = call.body
            if not isinstance(body, dict):
                raise InvalidInput("request body must be a JSON object")
            callback_url = await self.policy.check(body.get(CALLBACK_FIELD))
            # Stored as sent (its callback_url field is ignored by the codec, like any unknown one).
            request = StoredRequest(await call.request.body())
        key = call.request.headers.get(IDEMPOTENCY_HEADER)
        if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
            raise InvalidInput(f"Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} characters", param="Idempotency-Key")
        # The synchronous route's own decoding and validation: the same 400 for the same input.
        decoded = decode_rest_request(request.body, request.json_length, call.model.name, call.version)
        if isinstance(call.model, KubemindModel):
            call.model.validate_request(decoded)
        if not await self.broker.healthy():
            raise BrokerUnavailable(f"the job broker ({self.settings.broker}) is unavailable; retry later")
        job, created, outbox_id = await self.store.create_job(
            model=call.model.name,
            model_version=call.version,
            request=request,
            callback_url=callback_url,
            idempotency_key=key,
            topic=self.settings.topic,
            trace_context=inject(),
        )
        if created and outbox_id is not None:
            await self.cache.put(job)
            try:
                with span(f"publish {self.settings.topic}", SpanKind.PRODUCER, _messaging(self.settings.topic, job.id)):
                    await self.broker.publish(job.id, {"job_id": job.id, "model": job.model, "model_version": job.model_version},
                                              self.settings.publish_timeout_seconds)  # fmt: skip
                await self.store.mark_published([outbox_id])
            except BackendUnavailable as exc:
                logger.warning("job %s committed, left to the outbox relay: %s", job.id, exc)
                raise BrokerUnavailable(
                    f"the job broker ({self.settings.broker}) did not confirm job {job.id}: it is kept and runs once "
                    "the broker is back (retry with the same Idempotency-Key to get it)"
                ) from None
        reply: dict[str, Any] = {"id": job.id, "state": job.state, "status_url": f"/v2/jobs/{job.id}"}
        return json_response(reply, HTTPStatus.ACCEPTED, headers={"location": f"/v2/jobs/{job.id}"})

    async def _upload(self, request: Request) -> tuple[object, bytes]:
        """(callback_url, encoded image) of an upload: a form with an `image` file part, or a raw
        image body with `?callback_url=`."""
        if media_type(request) != "multipart/form-data":
            return request.query_params.get(CALLBACK_FIELD), await request.body()
        try:
            form = await request.form(max_files=1, max_fields=8)
        except (HTTPException, MultiPartException) as exc:
            detail = exc.detail if isinstance(exc, HTTPException) else exc.message
            raise InvalidInput(f"body: malformed multipart/form-data ({detail})", param="body") from None
        try:
            part = form.get(IMAGE_FIELD)
            if not isinstance(part, UploadFile):
                raise InvalidInput(f"{IMAGE_FIELD}: required, a file part of the form", param=IMAGE_FIELD)
            return form.get(CALLBACK_FIELD), await part.read()
        finally:
            await form.close()

    async def _image_request(self, model: BaseKServeModel, image: bytes) -> StoredRequest:
        """The model's v2 request for one uploaded image: its pixels, prepared as the image
        transformer prepares them (in a thread: decoding is CPU work), as binary tensor data."""
        name = self.settings.image_input_name
        if isinstance(model, KubemindModel) and model.inputs:
            spec = next((t for t in model.inputs if t.name == name), None)
            if spec is None or spec.datatype != "UINT8":
                raise UnsupportedMediaType(
                    f"model '{model.name}' takes no image uploads (no UINT8 input '{name}'); send its v2 request as JSON"
                )
        if not image:
            raise InvalidInput(f"{IMAGE_FIELD}: empty; expected an encoded image", param=IMAGE_FIELD)
        pixels = self.preprocessor.new_batch(1)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.preprocessor.prepare, IMAGE_FIELD, image, pixels[0])
        return StoredRequest(*binary_rest_request([(name, "UINT8", pixels)]))

    async def status(self, request: Request, record: RequestRecord) -> Response:
        job_id = request.path_params["job_id"]
        cached = await self.cache.get(job_id)
        if cached is not None:
            return json_response(cached)
        job = await self.store.get_job(job_id)
        if job is None:
            raise JobNotFound(f"job '{job_id}' is not found")
        # A worker may cache a newer state between this read and this write: put refuses to go back.
        await self.cache.put(job)
        return json_response(job.status())
