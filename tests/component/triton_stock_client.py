"""The stock `tritonclient.grpc`, in a process of its own (it and kserve both register the
`inference` protobuf package and cannot share an interpreter).

Usage: python triton_stock_client.py GRPC_ADDRESS < requests.json
Each request: {"model": str, "inputs": [{"name", "datatype", "shape", "data"}], "timeout": float?}
where BYTES data is a list of base64 strings (sent as raw bytes). Prints one answer per request:
{"outputs": {name: nested list}, "model_name", "model_version", "seconds": float} or {"error": {"status", "message"}, "seconds"}.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def _input(spec: dict[str, Any]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(spec["name"], spec["shape"], spec["datatype"])
    if spec["datatype"] == "BYTES":
        items = [base64.b64decode(item) for item in spec["data"]]
        array = np.empty(len(items), dtype=np.object_)
        array[:] = items
        tensor.set_data_from_numpy(array.reshape(spec["shape"]))
    else:
        tensor.set_data_from_numpy(np.array(spec["data"], dtype=grpcclient.triton_to_np_dtype(spec["datatype"])).reshape(spec["shape"]))
    return tensor


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def run(client: grpcclient.InferenceServerClient, request: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = client.infer(
            request["model"], [_input(s) for s in request["inputs"]], client_timeout=request.get("timeout", 30.0)
        )
    except InferenceServerException as exc:
        return {"error": {"status": str(exc.status()), "message": exc.message()}, "seconds": time.monotonic() - started}
    response = result.get_response()
    outputs = {}
    for output in response.outputs:
        array = result.as_numpy(output.name)
        outputs[output.name] = np.vectorize(_plain, otypes=[object])(array).tolist() if array.dtype == object else array.tolist()
    return {"outputs": outputs, "model_name": response.model_name, "model_version": response.model_version,
            "seconds": time.monotonic() - started}


def main() -> int:
    client = grpcclient.InferenceServerClient(sys.argv[1])
    answers = [run(client, request) for request in json.load(sys.stdin)]
    json.dump(answers, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
