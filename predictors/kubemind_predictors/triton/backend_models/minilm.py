"""all-MiniLM-L6-v2 sentence embeddings: text BYTES [n,1] -> embedding FP32 [n,384], L2-normalised,
and tokens INT32 [n,1], each text's token count ([CLS] and [SEP] included, after truncation).

Mean pooling and normalisation are inside the ONNX graph; tokenisation happens here so that
clients send plain text, and so the token counts (OpenAI's `usage`) come from here too: only the
model's own tokenizer counts them exactly.
"""

from __future__ import annotations

from typing import Any

import _runtime  # first: puts the side environment on sys.path
import numpy as np
import triton_python_backend_utils as pb_utils

MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        version = _runtime.version_dir(args)
        threads = int(_runtime.parameter(args, "intra_op_threads", "1"))
        self.session = _runtime.onnx_session(version / "model.onnx", threads)
        self.tokenizer = Tokenizer.from_file(str(version / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "text").as_numpy().reshape(-1)  # [n, 1] -> [n]
            try:
                texts = [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in raw]
            except UnicodeDecodeError as exc:
                error = pb_utils.TritonError(f"text is not UTF-8: {exc}", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            encodings = self.tokenizer.encode_batch(texts)
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            embedding = self.session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
            tensor = pb_utils.Tensor("embedding", np.ascontiguousarray(embedding, dtype=np.float32))
            tokens = pb_utils.Tensor("tokens", mask.sum(axis=1, dtype=np.int32).reshape(-1, 1))
            responses.append(pb_utils.InferenceResponse([tensor, tokens]))
        return responses
