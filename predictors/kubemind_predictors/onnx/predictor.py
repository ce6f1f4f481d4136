"""`OnnxPredictor`: one ONNX model run in-process by ONNX Runtime, the only module importing it.

The signature and the served version come from the folder's `kubemind-model.json` (what the
registry recorded and the initializer wrote), so `/v2/models/NAME/versions/<MLflow version>`
serves what was pinned. A folder the initializer did not prepare is served with the graph's own
signature and the `versions` setting. Inference runs in the batcher's threads, never on the event
loop; concurrent requests are batched when the graph's first dimension is dynamic.

A folder holding `labels.txt` (one class per line, Triton's label-file convention) serves a
classifier: the top-1 class of each row of its score output (the one with a column per label)
is counted in `kubemind_prediction_class_total`, the histogram the release controller's
model-quality gate compares between a candidate and its primary.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from kserve.protocol.infer_type import InferRequest, InferResponse

from kubemind.codecs import NumpyOutput
from kubemind.errors import InternalError, InvalidInput, InvalidSettings, ModelNotReady
from kubemind.model import KubemindModel, TensorSpec
from kubemind.telemetry import count_predictions, current_record
from kubemind_predictors.onnx.batcher import Arrays, DynamicBatcher
from kubemind_predictors.onnx.settings import OnnxSettings
from kubemind_registry.registered_model import tensor_spec
from kubemind_registry.served import ServedModel, Signature, served_model_if_initialized
from kubemind_registry.signatures import onnx_graph_signature

logger = logging.getLogger("kubemind.onnx")

LABELS_FILE = "labels.txt"
_OPTIMIZATION = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                 "all": "ORT_ENABLE_ALL"}


def find_model_file(model_dir: Path, model_file: str | None) -> Path:
    """The .onnx file to serve: the one named, or the only one in the folder."""
    if model_file:
        path = model_dir / model_file
        if not path.is_file():
            raise InvalidSettings(f"--model_file: {path} does not exist")
        return path
    candidates = sorted(model_dir.rglob("*.onnx"))
    if len(candidates) != 1:
        raise InvalidSettings(
            f"--model_dir {model_dir}: expected exactly one .onnx file, found {len(candidates)};"
            " name it with --model_file"
        )
    return candidates[0]


def read_labels(model_dir: Path) -> tuple[str, ...]:
    """The classifier's labels, in output-column order; empty when the folder has none."""
    path = model_dir / LABELS_FILE
    if not path.is_file():
        return ()
    return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _dynamic_first_dim(shape: Any) -> bool:
    return bool(shape) and not isinstance(shape[0], int)


class OnnxPredictor(KubemindModel):
    """One ONNX model served under `settings.model_name`, over REST and gRPC alike."""

    platform = "onnxruntime_onnx"
    backend = "onnxruntime"

    def __init__(self, settings: OnnxSettings):
        self.settings = settings
        self.model_dir = Path(settings.model_dir)
        self.model_path = find_model_file(self.model_dir, settings.model_file)
        # Read at construction like RegisteredModel: the signature is fixed when the model is built.
        self.served: ServedModel | None = served_model_if_initialized(self.model_dir)
        versions: tuple[str, ...]
        if self.served is not None:
            signature, versions = self.served.signature, (self.served.version,)
        else:
            signature, versions = onnx_graph_signature(self.model_path), tuple(settings.versions)
        if not signature.inputs:
            signature = onnx_graph_signature(self.model_path)
        super().__init__(
            settings.model_name,
            versions=versions,
            inputs=[tensor_spec(t) for t in signature.inputs],
            outputs=[tensor_spec(t) for t in signature.outputs],
            max_batch_size=0,  # set by load() once the graph says whether it batches
        )
        self._signature: Signature = signature
        self._session: Any = None
        self._output_names: list[str] = []
        self._batcher: DynamicBatcher | None = None
        self._string_inputs: frozenset[str] = frozenset()
        self.labels = read_labels(self.model_dir)

    # -- lifecycle ------------------------------------------------------------------------------
    def load(self) -> bool:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.settings.intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, _OPTIMIZATION[self.settings.graph_optimization]
        )
        try:
            session = ort.InferenceSession(str(self.model_path), sess_options=options,
                                           providers=list(self.settings.providers))
        except Exception as exc:  # ORT raises its own pybind exception types
            raise ModelNotReady(f"ONNX Runtime cannot load {self.model_path}: {exc}") from exc
        graph_inputs, graph_outputs = session.get_inputs(), session.get_outputs()
        self._output_names = [o.name for o in graph_outputs]
        self._string_inputs = frozenset(i.name for i in graph_inputs if i.type == "tensor(string)")
        batches = self.settings.max_batch_size > 0 and all(
            _dynamic_first_dim(t.shape) for t in (*graph_inputs, *graph_outputs)
        )
        self.max_batch_size = self.settings.max_batch_size if batches else 0
        self._session = session
        self._batcher = DynamicBatcher(
            self._run,
            max_batch_size=self.max_batch_size if batches else 1,
            max_queue_delay=self.settings.max_queue_delay_ms / 1000.0,
            instances=self.settings.instances,
            name=self.name,
        )
        logger.info(
            "loaded %s (version %s, %s, batching %s)", self.model_path, self.default_version,
            "registered signature" if self.served else "graph signature",
            f"up to {self.max_batch_size} rows" if batches else "off",
        )
        self.ready = True
        return self.ready

    def stop(self) -> None:
        self.ready = False
        if self._batcher is not None:
            self._batcher.close()
        self._session = None

    async def healthy(self) -> bool:
        return self._session is not None and self._batcher is not None and self._batcher.healthy()

    # -- inference -----------------------------------------------------------------------------
    def _run(self, inputs: Arrays) -> Arrays:
        """One ONNX Runtime execution; runs in a batcher thread."""
        session = self._session
        if session is None:
            raise ModelNotReady(f"model '{self.name}' is not loaded")
        try:
            results = session.run(self._output_names, inputs)
        except Exception as exc:
            kind = type(exc).__name__
            if kind in ("InvalidArgument", "InvalidGraph", "NotImplemented"):
                raise InvalidInput(f"model '{self.name}': {exc}") from None
            raise InternalError(f"model '{self.name}': ONNX Runtime failed: {kind}: {exc}") from None
        return dict(zip(self._output_names, results, strict=True))

    def _array(self, tensor: Any) -> np.ndarray:
        array = tensor.as_numpy()
        if tensor.name in self._string_inputs:  # ONNX Runtime takes str, v2 BYTES are bytes
            flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.ravel()]
            array = np.array(flat, dtype=object).reshape(array.shape)
        return array

    def _rows(self, inputs: Arrays) -> int:
        if self.max_batch_size <= 0:
            return 1
        rows = {name: int(array.shape[0]) for name, array in inputs.items()}
        if len(set(rows.values())) > 1:
            name = sorted(rows, key=lambda n: rows[n])[-1]
            raise InvalidInput(
                f"input '{name}': batch size {rows[name]} differs from the other inputs' "
                f"({', '.join(f'{n}: {r}' for n, r in sorted(rows.items()))})"
            )
        return next(iter(rows.values()), 1)

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        if self._batcher is None:
            raise ModelNotReady(f"model '{self.name}' is not loaded")
        inputs = {tensor.name: self._array(tensor) for tensor in payload.inputs}
        result = await self._batcher.submit(inputs, self._rows(inputs))
        record = current_record()
        if record is not None:
            record.add_stage("queue", result.queue_ns)
            record.executions = 1 if result.leader else 0
        if self.labels:
            self._count_top_classes(result.outputs)
        specs: dict[str, TensorSpec] = {spec.name: spec for spec in self.outputs}
        outputs = [
            NumpyOutput(name, array, specs[name].datatype if name in specs else None)
            for name, array in result.outputs.items()
        ]
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=outputs,
            model_version=payload.model_version,
        )

    def _count_top_classes(self, outputs: Arrays) -> None:
        """Top-1 label of each row of the first output with one column per label."""
        scores = next((a for a in outputs.values() if a.ndim == 2 and a.shape[1] == len(self.labels)
                       and np.issubdtype(a.dtype, np.number)), None)
        if scores is not None:
            count_predictions(self.labels[int(i)] for i in np.argmax(scores, axis=1))
