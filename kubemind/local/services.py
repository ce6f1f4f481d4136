"""The services `kubemind serve` runs locally, each a component started as its own process.

Each later component adds one `LocalService` entry here: how to start it and the
ready-to-paste client call that shows it works.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SampleCall = Callable[[str, str], str]  # (http_url, grpc_address) -> shell/python snippet


@dataclass(frozen=True)
class LocalService:
    name: str
    module: str
    args: tuple[str, ...]
    sample_call: SampleCall
    ready_timeout: float = 60.0


def _simple_sample(http_url: str, grpc_address: str) -> str:
    body = (
        '{"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},'
        ' {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}'
    )
    return "\n".join(
        [
            f"curl -s {http_url}/v2/models/simple",
            f"curl -s -X POST {http_url}/v2/models/simple/infer -d '{body}'",
            ".venv/bin/python - <<'PY'",
            "import numpy as np, tritonclient.grpc as g",
            f"c = g.InferenceServerClient('{grpc_address}')",
            "a = np.arange(16, dtype=np.int32).reshape(1, 16)",
            "ins = [g.InferInput(n, [1, 16], 'INT32') for n in ('INPUT0', 'INPUT1')]",
            "[i.set_data_from_numpy(a) for i in ins]",
            "print(c.infer('simple', ins).as_numpy('OUTPUT0'))",
            "PY",
        ]
    )


def local_services() -> list[LocalService]:
    return [
        LocalService("simple", "kubemind_predictors.simple", ("--model_name", "simple"), _simple_sample),
    ]
