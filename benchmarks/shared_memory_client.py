"""Load driver for bench_shared_memory: the stock `tritonclient.grpc` (in a process without kserve)
sending the same `simple` inference with its tensors in gRPC raw contents or in system shared
memory, alternating rounds. Usage: python shared_memory_client.py GRPC_ADDRESS ROUNDS SECONDS ROWS...
Prints one JSON object: {rows: {"raw": [infer/s per round], "shm": [...]}}.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm

ELEMENTS = 16


def _measure(call: Any, seconds: float) -> float:
    call()  # warm-up
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        call()
        count += 1
    return count / (time.perf_counter() - started)


def main(address: str, rounds: int, seconds: float, row_counts: list[int]) -> dict[str, Any]:
    client = grpcclient.InferenceServerClient(address)
    return {str(rows): measure_size(client, rows, rounds, seconds) for rows in row_counts}


def measure_size(client: grpcclient.InferenceServerClient, rows: int, rounds: int, seconds: float) -> dict[str, list[float]]:
    array = np.arange(rows * ELEMENTS, dtype=np.int32).reshape(rows, ELEMENTS)
    nbytes = array.nbytes
    raw_inputs = [grpcclient.InferInput(n, [rows, ELEMENTS], "INT32") for n in ("INPUT0", "INPUT1")]
    for tensor in raw_inputs:
        tensor.set_data_from_numpy(array)
    key_in, key_out = f"/kubemind_bench_in_{rows}", f"/kubemind_bench_out_{rows}"
    inputs_region = shm.create_shared_memory_region("in", key_in, nbytes * 2)
    outputs_region = shm.create_shared_memory_region("out", key_out, nbytes * 2)
    shm.set_shared_memory_region(inputs_region, [array, array])
    client.unregister_system_shared_memory()
    client.register_system_shared_memory("bench_in", key_in, nbytes * 2)
    client.register_system_shared_memory("bench_out", key_out, nbytes * 2)
    shm_inputs = [grpcclient.InferInput(n, [rows, ELEMENTS], "INT32") for n in ("INPUT0", "INPUT1")]
    shm_outputs = [grpcclient.InferRequestedOutput(n) for n in ("OUTPUT0", "OUTPUT1")]
    for index, (tensor, output) in enumerate(zip(shm_inputs, shm_outputs, strict=True)):
        tensor.set_shared_memory("bench_in", nbytes, offset=index * nbytes)
        output.set_shared_memory("bench_out", nbytes, offset=index * nbytes)

    def raw_call() -> None:
        result = client.infer("simple", raw_inputs)
        result.as_numpy("OUTPUT0")

    def shm_call() -> None:
        client.infer("simple", shm_inputs, outputs=shm_outputs)
        shm.get_contents_as_numpy(outputs_region, np.int32, [rows, ELEMENTS])

    shm_call()
    assert (shm.get_contents_as_numpy(outputs_region, np.int32, [rows, ELEMENTS]) == array * 2).all()
    measured: dict[str, list[float]] = {"raw": [], "shm": []}
    for round_index in range(rounds):
        order = (("raw", raw_call), ("shm", shm_call))
        for name, call in order if round_index % 2 == 0 else reversed(order):
            measured[name].append(_measure(call, seconds))
    client.unregister_system_shared_memory()
    shm.destroy_shared_memory_region(inputs_region)
    shm.destroy_shared_memory_region(outputs_region)
    return measured


if __name__ == "__main__":
    grpc_address, rounds_arg, seconds_arg, *rows_args = sys.argv[1:]
    print(json.dumps(main(grpc_address, int(rounds_arg), float(seconds_arg), [int(r) for r in rows_args])))
