"""`ImageTransformer`: encoded images in, top-k ImageNet labels out, via a v2 predictor over gRPC.

Inputs (v2): `image` BYTES [n] - JPEG/PNG bytes (binary over gRPC or binary REST), or base64 text in
JSON. Outputs: `labels` BYTES [n, k], `probabilities` FP32 [n, k], `class_ids` INT32 [n, k].
v1: POST /v1/models/{name}:predict with {"instances": [{"image": {"b64": ...}}]}.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from kserve.protocol.infer_type import InferRequest, InferResponse

from kubemind.codecs import NumpyOutput
from kubemind.errors import V1, InvalidInput, ModelNotFound
from kubemind.model import KubemindModel, TensorSpec
from kubemind.oip_client import OIPClient, RetryPolicy, SharedTensor, Tensor
from kubemind.protocol.pipeline import Route, RouteCall
from kubemind.telemetry import count_predictions
from kubemind_transformers.image.handoff import SharedMemoryHandoff, Slot
from kubemind_transformers.image.labels import ImageNetLabels, top_k
from kubemind_transformers.image.preprocessing import ImagePreprocessor
from kubemind_transformers.image.settings import ImageTransformerSettings


class ImageTransformer(KubemindModel):
    """Pre-processes images, forwards the batch to the classifier, post-processes to top-k."""

    def __init__(self, settings: ImageTransformerSettings):
        k = settings.top_k
        super().__init__(
            settings.model_name,
            inputs=[TensorSpec("image", "BYTES", (-1,))],
            outputs=[
                TensorSpec("labels", "BYTES", (-1, k)),
                TensorSpec("probabilities", "FP32", (-1, k)),
                TensorSpec("class_ids", "INT32", (-1, k)),
            ],
            max_batch_size=settings.max_batch,
        )
        self.settings = settings
        self.preprocessor = ImagePreprocessor(settings)
        self.labels = ImageNetLabels.load()
        self.predictor_model = settings.predictor_model_name or settings.model_name
        self.propagate = frozenset(settings.propagate_headers)
        # The predictor speaks the same Open Inference Protocol gRPC as Triton: one client for both.
        self.client = OIPClient(
            settings.predictor_host,
            RetryPolicy(
                timeout=settings.request_timeout_seconds,
                retry_budget=settings.retry_budget,
                backoff=0.05,
                cooldown=0.5,
            ),
        )
        self._executor: ThreadPoolExecutor | None = None
        self.handoff: SharedMemoryHandoff | None = None

    def load(self) -> bool:
        self.ready = True
        return self.ready

    def start(self) -> None:
        self.client.connect()
        self._executor = ThreadPoolExecutor(self.settings.decode_workers, thread_name_prefix="image-decode")
        if self.settings.predictor_shared_memory:
            slot_bytes = self.settings.max_batch * self.preprocessor.new_batch(1).nbytes
            self.handoff = SharedMemoryHandoff(self.client, slot_bytes, self.settings.predictor_shared_memory_slots)

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def stop_async(self) -> None:
        if self.handoff is not None:
            await self.handoff.close()  # over the channel: before it closes
            self.handoff = None
        await self.client.close()

    async def healthy(self) -> bool:
        return await self.client.model_ready(self.predictor_model)

    def check_batch(self, items: list[bytes | str]) -> None:
        if not items:
            raise InvalidInput("the request holds no image (empty 'image' tensor)")
        if len(items) > self.settings.max_batch:
            raise InvalidInput(f"{len(items)} images is over the limit of {self.settings.max_batch} per request")

    async def preprocess_images(self, items: list[bytes | str], batch: np.ndarray | None = None) -> np.ndarray:
        """Encoded images -> UINT8 [n, size, size, 3] (into `batch` where given), decoded in the
        thread pool."""
        self.check_batch(items)
        loop = asyncio.get_running_loop()
        batch = self.preprocessor.new_batch(len(items)) if batch is None else batch
        await asyncio.gather(
            *(
                loop.run_in_executor(self._executor, self.preprocessor.prepare_encoded, index, item, batch[index])
                for index, item in enumerate(items)
            )
        )
        return batch

    async def classify(
        self, items: list[bytes | str], headers: dict[str, str] | None = None, request_id: str = ""
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k class indices and probabilities, [n, k] each."""
        self.check_batch(items)
        forwarded = tuple((k.lower(), v) for k, v in (headers or {}).items() if k.lower() in self.propagate)
        handoff = self.handoff
        slot = await handoff.acquire() if handoff is not None else None
        try:
            image_shape = (self.settings.image_size, self.settings.image_size, 3)
            batch = await self.preprocess_images(items, slot.batch(len(items), image_shape) if slot else None)
            logits = await self.forward_batch(batch, slot, request_id, forwarded)
        finally:
            if handoff is not None and slot is not None:
                handoff.release(slot)
        return top_k(logits, self.settings.top_k)

    async def forward_batch(
        self, batch: np.ndarray, slot: Slot | None, request_id: str, metadata: tuple[tuple[str, str], ...]
    ) -> np.ndarray:
        """The predictor's logits for `batch`: named by its shared-memory slot, or on the wire."""
        name = self.settings.predictor_input_name

        async def infer(tensor: Tensor | SharedTensor) -> np.ndarray:
            outputs = await self.client.infer(
                self.predictor_model, [tensor], request_id=request_id,
                outputs=[self.settings.predictor_output_name], metadata=metadata,
            )  # fmt: skip
            return outputs[0].array

        if slot is not None and self.handoff is not None:
            try:
                return await infer(SharedTensor(name, "UINT8", batch.shape, slot.region, batch.nbytes))
            except (InvalidInput, ModelNotFound):
                if await self.client.system_shared_memory_registered(slot.region):
                    raise  # the request itself is wrong
                self.handoff.lost(slot)  # the predictor forgot the region: this one goes over the wire
        return await infer(Tensor(name, "UINT8", batch))

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        images = payload.get_input_by_name("image")
        if images is None:
            raise InvalidInput("missing input 'image'")
        items = list(images.as_numpy().reshape(-1))
        indices, probabilities = await self.classify(items, headers, payload.id or "")
        count_predictions(str(int(c)) for c in indices[:, 0])
        names = np.array(self.labels.names, dtype=np.object_)[indices]
        labels = np.vectorize(lambda name: name.encode("utf-8"), otypes=[np.object_])(names)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[
                NumpyOutput("labels", labels, "BYTES"),
                NumpyOutput("probabilities", probabilities.astype(np.float32), "FP32"),
                NumpyOutput("class_ids", indices.astype(np.int32), "INT32"),
            ],
            model_version=payload.model_version,
        )

    def routes(self) -> list[Route]:
        return [Route("POST", "/v1/models/{model_name}:predict", "v1_predict", self._predict_v1, protocol=V1)]

    async def _predict_v1(self, call: RouteCall) -> dict[str, Any]:
        """KServe's v1 protocol: {"instances": [{"image": {"b64": ...}}]} -> {"predictions": [...]}."""
        items = v1_images(call.body)
        indices, probabilities = await self.classify(items, call.headers, call.headers.get("x-request-id", ""))
        return {
                "predictions": [
                    [
                        {"label": self.labels.names[c], "class_id": int(c), "probability": float(p)}
                        for c, p in zip(row_classes, row_probabilities, strict=True)
                    ]
                for row_classes, row_probabilities in zip(indices, probabilities, strict=True)
            ]
        }


def v1_images(body: Any) -> list[bytes | str]:
    """The base64 images of a v1 body; errors name the instance index."""
    instances = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(instances, list):
        raise InvalidInput('the body must be {"instances": [{"image": {"b64": "..."}}, ...]}')
    items: list[bytes | str] = []
    for index, instance in enumerate(instances):
        image = instance.get("image") if isinstance(instance, dict) else None
        encoded = image.get("b64") if isinstance(image, dict) else None
        if not isinstance(encoded, str):
            raise InvalidInput(f'instance {index}: expected {{"image": {{"b64": "<base64>"}}}}')
        items.append(encoded)
    return items
