"""ImageNet classifier: EfficientNet-Lite0 on ONNX Runtime. input UINT8 [n,224,224,3] (resized RGB
pixels) -> logits FP32 [n,1000]; the normalisation is part of the ONNX graph (export.py).

Triton's dynamic batcher hands execute() several requests at once; they run as one ONNX batch.
"""

from __future__ import annotations

from typing import Any

import _runtime  # first: puts the side environment on sys.path
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        threads = int(_runtime.parameter(args, "intra_op_threads", "1"))
        self.session = _runtime.onnx_session(_runtime.version_dir(args) / "model.onnx", threads)

    def execute(self, requests: list[Any]) -> list[Any]:
        images = [pb_utils.get_input_tensor_by_name(r, "input").as_numpy() for r in requests]
        sizes = [len(batch) for batch in images]
        logits = self.session.run(["logits"], {"input": np.concatenate(images)})[0]
        responses = []
        start = 0
        for size in sizes:
            chunk = np.ascontiguousarray(logits[start : start + size])
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("logits", chunk)]))
            start += size
        return responses
