"""The stock `tritonclient.grpc` streaming a graph from the router (`ModelStreamInfer`), in a
process of its own (tritonclient.grpc and kserve cannot share one interpreter).

Usage: python router_stream_probe.py GRPC_ADDRESS GRAPH PROMPT [IMAGE_FILE]
Prints {"streamed": [[text, final], ...], "whole": {"outputs": ..., "parameters": ...}}.
"""

from __future__ import annotations

import json
import queue
import sys
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient


def _bytes_input(name: str, value: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1], "BYTES")
    tensor.set_data_from_numpy(np.array([value], dtype=np.object_))
    return tensor


def _inputs(prompt: str, image: bytes | None) -> list[grpcclient.InferInput]:
    inputs = [_bytes_input("text_input", prompt.encode())]
    if image is not None:
        inputs.append(_bytes_input("image", image))
    return inputs


def main() -> int:
    address, graph, prompt = sys.argv[1:4]
    image = Path(sys.argv[4]).read_bytes() if len(sys.argv) > 4 else None
    client = grpcclient.InferenceServerClient(address)
    answers: queue.Queue[Any] = queue.Queue()
    client.start_stream(lambda result, error: answers.put(error if error is not None else result))
    flag = grpcclient.InferInput("stream", [1], "BOOL")
    flag.set_data_from_numpy(np.array([True], dtype=bool))
    client.async_stream_infer(graph, [*_inputs(prompt, image), flag], request_id="probe")
    client.stop_stream()
    streamed: list[Any] = []
    while not answers.empty():
        answer = answers.get()
        if isinstance(answer, Exception):
            streamed.append({"error": str(answer)})
            continue
        final = answer.get_response().parameters["triton_final_response"].bool_param
        streamed.append([answer.as_numpy("text_output")[0].decode(), final])
    whole = client.infer(graph, _inputs(prompt, image))
    response = whole.get_response()
    outputs = {o.name: [v.decode() if isinstance(v, bytes) else v for v in whole.as_numpy(o.name).reshape(-1).tolist()] for o in response.outputs}
    parameters = {k: v.string_param for k, v in response.parameters.items()}
    print(json.dumps({"streamed": streamed, "whole": {"outputs": outputs, "parameters": parameters}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
