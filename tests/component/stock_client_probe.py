"""Drives a server with the stock Triton clients and prints what they saw as JSON.

Runs as its own process: `tritonclient.grpc` and `kserve` register the same `inference`
protobuf package and cannot share one interpreter, so the test process (which imports kserve)
starts this script instead. Usage: python stock_client_probe.py HTTP_ADDR GRPC_ADDR MODEL
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from google.protobuf.json_format import MessageToDict
from tritonclient.utils import InferenceServerException

INPUT0 = np.arange(16, dtype=np.int32).reshape(1, 16)
INPUT1 = np.full((1, 16), 3, dtype=np.int32)


def _inputs(module: Any, binary: bool = True) -> list[Any]:
    tensors = []
    for name, array in (("INPUT0", INPUT0), ("INPUT1", INPUT1)):
        tensor = module.InferInput(name, list(array.shape), "INT32")
        if module is httpclient:
            tensor.set_data_from_numpy(array, binary_data=binary)
        else:
            tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def _error(call: Any) -> dict[str, str]:
    try:
        call()
    except InferenceServerException as exc:
        return {"status": str(exc.status()), "message": exc.message()}
    return {"status": "ok", "message": ""}


def probe_http(address: str, model: str) -> dict[str, Any]:
    client = httpclient.InferenceServerClient(address)
    binary = client.infer(model, _inputs(httpclient), outputs=[httpclient.InferRequestedOutput(n, binary_data=True) for n in ("OUTPUT0", "OUTPUT1")])
    as_json = client.infer(model, _inputs(httpclient, binary=False), outputs=[httpclient.InferRequestedOutput(n, binary_data=False) for n in ("OUTPUT0", "OUTPUT1")])
    versioned = client.infer(model, _inputs(httpclient), model_version="1")
    return {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "server_metadata": client.get_server_metadata(),
        "model_metadata": client.get_model_metadata(model),
        "model_config": client.get_model_config(model),
        "statistics": client.get_inference_statistics(model),
        "repository_index": client.get_model_repository_index(),
        "binary_outputs": [binary.as_numpy("OUTPUT0").tolist(), binary.as_numpy("OUTPUT1").tolist()],
        "json_outputs": [as_json.as_numpy("OUTPUT0").tolist(), as_json.as_numpy("OUTPUT1").tolist()],
        "versioned_outputs": [versioned.as_numpy("OUTPUT0").tolist(), versioned.as_numpy("OUTPUT1").tolist()],
        "unknown_model": _error(lambda: client.infer("no-such-model", _inputs(httpclient))),
        "unknown_version": _error(lambda: client.infer(model, _inputs(httpclient), model_version="99")),
        "shared_memory": probe_shared_memory(client, httpclient, model, "http"),
    }


def _cuda_status(client: Any, module: Any) -> Any:
    if module is httpclient:
        return client.get_cuda_shared_memory_status()
    return client.get_cuda_shared_memory_status(as_json=True)


def probe_shared_memory(client: Any, module: Any, model: str, tag: str) -> dict[str, Any]:
    """Inputs read from and outputs written to system shared memory, as Triton's
    simple_*_shm_client examples do; then the errors for a missing region and an overrun."""
    nbytes = INPUT0.nbytes
    client.unregister_system_shared_memory()
    inputs_handle = shm.create_shared_memory_region(f"in-{tag}", f"/kubemind_in_{tag}", nbytes * 2)
    outputs_handle = shm.create_shared_memory_region(f"out-{tag}", f"/kubemind_out_{tag}", nbytes * 2)
    try:
        shm.set_shared_memory_region(inputs_handle, [INPUT0, INPUT1])
        client.register_system_shared_memory("input_data", f"/kubemind_in_{tag}", nbytes * 2)
        client.register_system_shared_memory("output_data", f"/kubemind_out_{tag}", nbytes * 2)
        inputs = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
        inputs[0].set_shared_memory("input_data", nbytes)
        inputs[1].set_shared_memory("input_data", nbytes, offset=nbytes)
        outputs = [module.InferRequestedOutput(name) for name in ("OUTPUT0", "OUTPUT1")]
        outputs[0].set_shared_memory("output_data", nbytes)
        outputs[1].set_shared_memory("output_data", nbytes, offset=nbytes)
        client.infer(model, inputs, outputs=outputs)
        status = client.get_system_shared_memory_status() if module is httpclient else client.get_system_shared_memory_status(as_json=True)
        read = [
            shm.get_contents_as_numpy(outputs_handle, np.int32, [1, 16]).tolist(),
            shm.get_contents_as_numpy(outputs_handle, np.int32, [1, 16], offset=nbytes).tolist(),
        ]
        overrun = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
        overrun[0].set_shared_memory("input_data", nbytes)
        overrun[1].set_shared_memory("input_data", nbytes, offset=nbytes + 4)
        missing = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
        for tensor in missing:
            tensor.set_shared_memory("no-such-region", nbytes)
        return {
            "outputs": read,
            "status": status,
            "overrun": _error(lambda: client.infer(model, overrun)),
            "missing": _error(lambda: client.infer(model, missing)),
            # No GPU: no CUDA region can exist, so its status is empty and unregistering all of
            # them succeeds (Triton's shm examples do both first); registering one is refused.
            "cuda_status": _cuda_status(client, module),
            "cuda_unregister": _error(lambda: client.unregister_cuda_shared_memory()),
            "cuda_register": _error(lambda: client.register_cuda_shared_memory("gpu", b"\0" * 64, 0, 64)),
        }
    finally:
        client.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(inputs_handle)
        shm.destroy_shared_memory_region(outputs_handle)


def probe_stream(client: Any, model: str) -> list[dict[str, Any]]:
    """ModelStreamInfer through start_stream/async_stream_infer: three good requests and one for
    an unknown model; one answer each, sorted by request id (the stream may reorder them)."""
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()

    def callback(result: Any, error: Any) -> None:
        with lock:
            if error is not None:
                answers.append({"id": "error", "error": str(error)})
            else:
                response = result.get_response()
                answers.append({"id": response.id, "OUTPUT0": result.as_numpy("OUTPUT0").tolist()})

    client.start_stream(callback)
    for index in range(3):
        client.async_stream_infer(model, _inputs(grpcclient), request_id=f"s{index}")
    client.async_stream_infer("no-such-model", _inputs(grpcclient), request_id="bad")
    client.stop_stream()
    return sorted(answers, key=lambda a: a["id"])


def probe_grpc(address: str, model: str) -> dict[str, Any]:
    client = grpcclient.InferenceServerClient(address)
    result = client.infer(model, _inputs(grpcclient))
    wrong_type = grpcclient.InferInput("INPUT0", [1, 16], "FP32")
    wrong_type.set_data_from_numpy(INPUT0.astype(np.float32))
    return {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "server_metadata": MessageToDict(client.get_server_metadata()),
        "model_metadata": MessageToDict(client.get_model_metadata(model)),
        "model_config": client.get_model_config(model, as_json=True),
        "statistics": client.get_inference_statistics(model, as_json=True),
        "repository_index": client.get_model_repository_index(as_json=True),
        "raw_outputs": [result.as_numpy("OUTPUT0").tolist(), result.as_numpy("OUTPUT1").tolist()],
        "unknown_model": _error(lambda: client.infer("no-such-model", _inputs(grpcclient))),
        "wrong_datatype": _error(lambda: client.infer(model, [wrong_type, _inputs(grpcclient)[1]])),
        "stream": probe_stream(client, model),
        "shared_memory": probe_shared_memory(client, grpcclient, model, "grpc"),
    }


if __name__ == "__main__":
    http_address, grpc_address, model_name = sys.argv[1:4]
    print(json.dumps({"http": probe_http(http_address, model_name), "grpc": probe_grpc(grpc_address, model_name)}))
