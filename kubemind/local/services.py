"""The services `kubemind serve` runs locally, each a component started as its own process.

Each later component adds one `LocalService` entry here: how to start it and the
ready-to-paste client call that shows it works.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubemind.processes import python_command

SampleCall = Callable[[str, str], str]  # (http_url, grpc_address) -> shell/python snippet


@dataclass(frozen=True)
class LocalService:
    name: str
    module: str
    args: tuple[str, ...]
    sample_call: SampleCall
    ready_timeout: float = 60.0
    env: tuple[tuple[str, str], ...] = ()
    forwards_to: str | None = None
    """A transformer's predictor: that service's gRPC address is passed as --predictor_host."""
    graph_services: tuple[tuple[str, str, str], ...] = ()
    """A router's steps: (serviceName in the graph, local service, "grpc" or "http"), passed as
    --service_hosts with that service's address."""

    @property
    def needs(self) -> set[str]:
        """The services this one calls, which must be started before it."""
        forwarded = {self.forwards_to} if self.forwards_to else set()
        return forwarded | {local for _, local, _ in self.graph_services}


def _simple_sample(http_url: str, grpc_address: str) -> str:
    body = (
        '{"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},'
        ' {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}'
    )
    return "\n".join(
        [
            f"curl -s {http_url}/v2/models/simple",
            f"curl -s -X POST {http_url}/v2/models/simple/infer -d '{body}'",
            f"{python_command()} - <<'PY'",
            "import numpy as np, tritonclient.grpc as g",
            f"c = g.InferenceServerClient('{grpc_address}')",
            "a = np.arange(16, dtype=np.int32).reshape(1, 16)",
            "ins = [g.InferInput(n, [1, 16], 'INT32') for n in ('INPUT0', 'INPUT1')]",
            "[i.set_data_from_numpy(a) for i in ins]",
            "print(c.infer('simple', ins).as_numpy('OUTPUT0'))",
            "PY",
        ]
    )


def _llm_chat_sample(http_url: str, grpc_address: str) -> str:
    return "\n".join(
        [
            f"{python_command()} - <<'PY'",
            "from openai import OpenAI",
            f"c = OpenAI(base_url='{http_url}/openai/v1', api_key='unused')",
            "r = c.chat.completions.create(model='smollm2', max_tokens=32, temperature=0,",
            "    messages=[{'role': 'user', 'content': 'What is the capital of France?'}])",
            "print(r.choices[0].message.content)",
            "PY",
        ]
    )


def _llm_chat() -> LocalService:
    from kubemind_predictors.vllm.convert import default_smollm2_dir  # stdlib-only module

    return LocalService(
        "llm-chat",
        "kubemind_predictors.vllm",
        (
            "--model_name", "smollm2", "--model_dir", str(default_smollm2_dir()),
            # float32: bf16 kernels die with SIGILL on these CPUs; eager and a 1 GiB KV cache
            # keep start-up and memory small.
            "--dtype", "float32", "--enforce_eager", "true", "--kv_cache_space", "1", "--max_model_len", "2048",
        ),
        _llm_chat_sample,
        ready_timeout=600.0,
        env=(("HF_HUB_OFFLINE", "1"),),
    )


def _triton_services() -> list[LocalService]:
    from kubemind_predictors.triton.sample_calls import embedder_sample
    from kubemind_transformers.image.sample_calls import classifier_sample

    triton = LocalService(
        "triton",
        "kubemind_predictors.triton",
        # The predictor launches its own tritonserver on free loopback ports.
        ("--launch_triton", "true", "--models", "efficientnet_lite0,minilm",
         "--triton_http_port", "0", "--triton_grpc_port", "0", "--triton_metrics_port", "0"),
        embedder_sample,
        ready_timeout=180.0,
    )
    image = LocalService(
        "image",
        "kubemind_transformers.image",
        ("--model_name", "efficientnet_lite0"),
        classifier_sample,
        forwards_to="triton",
    )
    return [triton, image]


# The graph the cluster gets (inferenceservices/base): the local runner runs the cluster's specs.
CV_TO_LLM_GRAPH = Path(__file__).resolve().parents[2] / "inferenceservices" / "base" / "cv-to-llm" / "inferencegraph.yaml"


def _router() -> list[LocalService]:
    """The cv-to-llm graph, where this is a checkout (the graph file is not in the package)."""
    if not CV_TO_LLM_GRAPH.is_file():
        return []
    from kubemind_transformers.router.sample_calls import router_sample

    return [
        LocalService(
            "router",
            "kubemind_transformers.router",
            ("--graph", str(CV_TO_LLM_GRAPH)),
            router_sample,
            graph_services=(("cv-classifier", "image", "grpc"), ("llm-chat", "llm-chat", "http")),
        )
    ]


def local_services() -> list[LocalService]:
    """In start order: a transformer comes after the predictor it forwards to, the router after
    the services its graph calls."""
    return [
        LocalService("simple", "kubemind_predictors.simple", ("--model_name", "simple"), _simple_sample),
        *_triton_services(),
        _llm_chat(),
        *_router(),
    ]
