"""`kubemind serve --model models:/NAME@ALIAS`: from the registry to a served model in one step.

Resolves the URI to an immutable version, initializes it into the node cache with the
registry's storage initializer (a second run downloads nothing), reads the flavor the
registration recorded from `kubemind-model.json`, starts the runtime the one flavor table
(`kubemind.runtimes`) names for it, and prints endpoints and ready-to-paste calls built from the
registered signature. Ctrl+C or SIGTERM stops it (by PID); SIGKILL takes it down too, since
the child dies with its parent.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from kubemind.errors import KubemindError
from kubemind.local.node_cache import initialize_into_cache
from kubemind.processes import (
    PortInUse,
    ServerProcess,
    check_port_free,
    free_port,
    python_command,
    start_server,
)
from kubemind.runtimes import NoRuntime, Runtime, runtime_for

PREFIX = "kubemind serve"


def serve_model(args: argparse.Namespace) -> int:
    """Exit codes: 0 stopped by a signal, 1 a failure (registry, download, start), 2 a flavor
    without a runtime or a busy port."""
    try:
        ports = _ports(args.http_port, args.grpc_port)
    except PortInUse as exc:
        print(f"{PREFIX}: {exc}; pass --http_port 0 --grpc_port 0 for free ports", file=sys.stderr)
        return 2
    try:
        model_dir, served = initialize_into_cache(args.model, args.cache_dir)
        runtime = runtime_for(served.flavor)
    except KubemindError as exc:
        code = 2 if isinstance(exc, NoRuntime) else 1
        print(f"{PREFIX}: error: {exc}", file=sys.stderr)
        return code
    except OSError as exc:
        print(f"{PREFIX}: error: cannot write the model cache: {exc}", file=sys.stderr)
        return 1
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="kubemind-serve-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log_path = log_dir / f"{served.name}.log"
    print(f"starting {served.name} v{served.version} ({served.flavor} -> {runtime.module}) ...", flush=True)
    try:
        server = start_server(
            runtime.module,
            [*runtime.args(served.name, model_dir), *runtime.local_args],
            log_path,
            env=dict(runtime.env),
            ports=ports,
            ready_timeout=runtime.ready_timeout,
        )
    except (RuntimeError, TimeoutError) as exc:
        print(f"{PREFIX}: {runtime.module} did not start: {_last_line(str(exc))}; log: {log_path}",
              file=sys.stderr)
        return 1
    try:
        print(_banner(server, served, runtime), flush=True)
        print(f"log: {log_path}\nready; Ctrl+C stops it.", flush=True)
        while not stop.wait(0.5):
            if server.process.poll() is not None:
                print(f"{PREFIX}: {runtime.module} exited with {server.process.returncode};"
                      f" see {log_path}", file=sys.stderr)
                return 1
        return 0
    finally:
        server.stop()


def _ports(http_port: int, grpc_port: int) -> tuple[int, int]:
    """The ports to give the runtime; 0 picks a free one. A busy one raises PortInUse now,
    before anything is downloaded."""
    for port in (http_port, grpc_port):
        check_port_free(port)
    return (http_port or free_port(), grpc_port or free_port())


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


# -- sample calls from the registered signature ----------------------------------------------
_SAMPLE_VALUES = {"BOOL": True, "BYTES": "hello"}


def _example(datatype: str) -> Any:
    if datatype in _SAMPLE_VALUES:
        return _SAMPLE_VALUES[datatype]
    return 1.0 if datatype.startswith(("FP", "BF")) else 1


def _example_shape(shape: tuple[int, ...]) -> list[int]:
    return [1 if dim < 0 else dim for dim in shape] or [1]


def _count(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def sample_calls(name: str, version: str, signature: Any, http_url: str, flavor: str = "") -> str:
    """A v2 curl call and a tritonclient.http script with one row of example values for every
    registered input (an OpenAI call too for an LLM)."""
    inputs = []
    for tensor in signature.inputs:
        shape = _example_shape(tensor.shape)
        inputs.append({"name": tensor.name, "datatype": tensor.datatype, "shape": shape,
                       "data": [_example(tensor.datatype)] * _count(shape)})
    body = json.dumps({"inputs": inputs})
    host = http_url.split("://", 1)[-1]
    lines = [
        f"curl -s {http_url}/v2/models/{name}/versions/{version}",
        f"curl -s -X POST {http_url}/v2/models/{name}/versions/{version}/infer"
        f" -H 'content-type: application/json' -d {shlex.quote(body)}; echo",
        f"{python_command()} - <<'PY'",
        "import numpy as np, tritonclient.http as h",
        f"c = h.InferenceServerClient({host!r})",
        "ins = []",
    ]
    for tensor in inputs:
        dtype = "object" if tensor["datatype"] == "BYTES" else None
        values = [v.encode() if isinstance(v, str) else v for v in tensor["data"]]
        array = (f"np.array({values!r}, dtype=object)" if dtype else
                 f"np.array({values!r}).astype(h.triton_to_np_dtype({tensor['datatype']!r}))")
        lines += [
            f"i = h.InferInput({tensor['name']!r}, {tensor['shape']!r}, {tensor['datatype']!r})",
            f"i.set_data_from_numpy({array}.reshape({tensor['shape']!r})); ins.append(i)",
        ]
    lines += [
        f"r = c.infer({name!r}, ins, model_version={version!r})",
        "print({o['name']: r.as_numpy(o['name']) for o in r.get_response()['outputs']})",
        "PY",
    ]
    if flavor == "hf-llm":
        lines += [
            f"{python_command()} - <<'PY'",
            "from openai import OpenAI",
            f"c = OpenAI(base_url='{http_url}/openai/v1', api_key='unused')",
            f"r = c.chat.completions.create(model={name!r}, max_tokens=32,"
            " messages=[{'role': 'user', 'content': 'Hello!'}])",
            "print(r.choices[0].message.content)",
            "PY",
        ]
    return "\n".join(lines)


def _banner(server: ServerProcess, served: Any, runtime: Runtime) -> str:
    calls = sample_calls(served.name, served.version, served.signature, server.http_url, served.flavor)
    return (
        f"\n== {served.name} v{served.version} ({served.source_uri}, {runtime.module}):"
        f" REST {server.http_url}  gRPC {server.grpc_address}  (pid {server.pid})\n{calls}\n"
    )
