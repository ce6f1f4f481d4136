"""Streams from an LLM predictor with the stock `tritonclient.grpc`, the way Triton's vLLM
backend is called (text_input, a BOOL `stream` input, sampling options as parameters), in a
process of its own (tritonclient.grpc and kserve cannot share one interpreter).

Usage: python triton_llm_stream_probe.py GRPC_ADDRESS MODEL
Prints {"streamed": [[text, final], ...], "whole": [[text, final], ...], "empty_prompt": error}.
"""

from __future__ import annotations

import json
import queue
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

PARAMETERS = {"max_tokens": 8, "temperature": 0.0}


def _inputs(prompt: str, stream: bool) -> list[grpcclient.InferInput]:
    text = grpcclient.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([prompt.encode()], dtype=np.object_))
    flag = grpcclient.InferInput("stream", [1], "BOOL")
    flag.set_data_from_numpy(np.array([stream], dtype=bool))
    return [text, flag]


def _run(client: grpcclient.InferenceServerClient, model: str, prompt: str, stream: bool) -> list[Any]:
    answers: queue.Queue[Any] = queue.Queue()

    def callback(result: Any, error: Any) -> None:
        answers.put(error if error is not None else result)

    client.start_stream(callback)
    client.async_stream_infer(model, _inputs(prompt, stream), request_id="r", parameters=PARAMETERS)
    client.stop_stream()
    seen: list[Any] = []
    while not answers.empty():
        answer = answers.get()
        if isinstance(answer, Exception):
            seen.append({"error": str(answer)})
            continue
        final = answer.get_response().parameters["triton_final_response"].bool_param
        seen.append([answer.as_numpy("text_output")[0].decode(), final])
    return seen


if __name__ == "__main__":
    address, model_name = sys.argv[1:3]
    client = grpcclient.InferenceServerClient(address)
    print(
        json.dumps(
            {
                "streamed": _run(client, model_name, "Hello there", True),
                "whole": _run(client, model_name, "Hello there", False),
                "empty_prompt": _run(client, model_name, "", True),
            }
        )
    )
