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
    """A transformer's predictor: that service's address is passed with `forward_flag`."""
    forward_flag: tuple[str, str] = ("--predictor_host", "grpc")
    """(flag, "grpc" or "http"): how the predictor's address is passed (its gRPC host:port, or
    its http:// URL)."""
    graph_services: tuple[tuple[str, str, str], ...] = ()
    """A router's steps: (serviceName in the graph, local service, "grpc" or "http"), passed as
    --service_hosts with that service's address."""
    opt_in: bool = False
    """Started only when named with --only: it needs services a machine may not run (the jobs
    path needs Postgres, Redis and RabbitMQ)."""

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
        # Same host as its predictor: the pixels go through shared memory, not the wire.
        ("--model_name", "efficientnet_lite0", "--predictor_shared_memory", "true"),
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
            graph_services=(("cv-classifier", "image", "http"), ("llm-chat", "llm-chat", "http")),
        )
    ]
def _rag() -> list[LocalService]:
    """RAG over the Python reference: indexed into $KUBEMIND_HOME on the first start (minutes on
    two cores), features from the checkout's Feast repository when there is one."""
    from kubemind_transformers.rag.features import repository_root
    from kubemind_transformers.rag.sample_calls import rag_sample

    features = repository_root()
    feature_args = ("--feature_repo", str(features)) if (features / "data" / "registry.db").is_file() else ()
    return [
        LocalService(
            "rag",
            "kubemind_transformers.rag",
            ("--index_corpus", "python-reference", *feature_args),
            rag_sample,
            ready_timeout=1200.0,
            forwards_to="llm-chat",
            forward_flag=("--llm_url", "http"),
        )
    ]


JOBS_MODEL = "efficientnet_lite0"
"""The model `kubemind serve`'s job writer runs jobs of: the CV model, whose UINT8 pixel input
(the writer's `image_input_name`) an image upload fills."""


def _jobs_sample(http_url: str, grpc_address: str) -> str:
    """Upload matplotlib's grace_hopper.jpg as a job (curl -F, as a client would) with a local
    listener as its callback; verify the signed webhook and print its top classes."""
    from kubemind_workers.settings import CVWorkerSettings  # pydantic only: cheap

    secret = CVWorkerSettings().webhook_secret
    return "\n".join(
        [
            f"{python_command()} - <<'PY'",
            "import http.server, json, pathlib, subprocess, threading, time, uuid",
            "import matplotlib, numpy as np",
            "from kubemind_transformers.image.labels import ImageNetLabels, top_k",
            "from kubemind_workers.signing import verify",
            "got = {}",
            "class Hook(http.server.BaseHTTPRequestHandler):",
            "    def do_POST(self):",
            "        got['body'] = self.rfile.read(int(self.headers['content-length'])); got['headers'] = dict(self.headers)",
            "        self.send_response(204); self.end_headers()",
            "listener = http.server.HTTPServer(('127.0.0.1', 0), Hook)",
            "threading.Thread(target=listener.handle_request).start()",
            "image = pathlib.Path(matplotlib.get_data_path()) / 'sample_data' / 'grace_hopper.jpg'",
            f"upload = ['curl', '-sS', '-X', 'POST', '{http_url}/v2/models/{JOBS_MODEL}/jobs', '-H', f'Idempotency-Key: {{uuid.uuid4()}}',",
            "          '-F', f'image=@{image};type=image/jpeg', '-F', f'callback_url=http://127.0.0.1:{listener.server_port}/hook']",
            "print(subprocess.run(upload, check=True, stdout=subprocess.PIPE, text=True).stdout)",
            "deadline = time.monotonic() + 60",
            "while 'body' not in got and time.monotonic() < deadline: time.sleep(0.1)",
            "assert 'body' in got, 'no webhook within 60 s: is the jobs-worker running?'",
            f"verify('{secret}', {{k.lower(): v for k, v in got['headers'].items()}}, got['body'])",
            "(logits,) = json.loads(got['body'])['data']['result']['outputs']",
            "classes, probabilities = top_k(np.asarray(logits['data'], dtype=np.float32).reshape(logits['shape']), 3)",
            "names = ImageNetLabels.load().names",
            "print('signed webhook:', [(names[c], round(float(p), 3)) for c, p in zip(classes[0], probabilities[0])])",
            "PY",
        ]
    )


def _jobs_services() -> list[LocalService]:
    """The job writer (the Triton predictor with the jobs routes, launching its own Triton with the
    CV model, which takes image uploads, and `simple` for JSON jobs) and one CV worker, on the
    machine's RabbitMQ, Postgres and Redis. The database is KUBEMIND_JOBS_DATABASE_URL /
    KUBEMIND_WORKER_DATABASE_URL (default: postgres on 127.0.0.1)."""
    broker = ("--broker", "rabbitmq", "--broker_url", "amqp://guest:guest@127.0.0.1:5672/",
              "--topic", "cv-jobs-local", "--callback_allow_list", "127.0.0.1")  # fmt: skip
    writer = LocalService(
        "jobs",
        "kubemind_workers",
        ("--launch_triton", "true", "--models", f"{JOBS_MODEL},simple",
         "--triton_http_port", "0", "--triton_grpc_port", "0", "--triton_metrics_port", "0", *broker),
        _jobs_sample,
        ready_timeout=180.0,
        opt_in=True,
    )
    worker = LocalService(
        "jobs-worker",
        "kubemind_workers.worker",
        broker,
        lambda http_url, grpc_address: f"curl -s {http_url}/metrics | grep kubemind_jobs",
        forwards_to="jobs",
        opt_in=True,
    )
    return [writer, worker]


def local_services() -> list[LocalService]:
    """In start order: a transformer comes after the predictor it forwards to, the router after
    the services its graph calls."""
    return [
        LocalService("simple", "kubemind_predictors.simple", ("--model_name", "simple"), _simple_sample),
        *_triton_services(),
        _llm_chat(),
        *_router(),
        *_rag(),
        *_jobs_services(),
    ]


def up_sample_calls() -> dict[str, SampleCall]:
    """The sample call for a service whose entry runs each module, for `kubemind up` to print
    once everything is ready: the local services' own, and stock Triton's (v2 only)."""
    from kubemind.local.up.specs import NATIVE_SERVERS
    from kubemind_predictors.triton.sample_calls import embedder_v2_sample

    calls = {service.module: service.sample_call for service in local_services() if not service.opt_in}
    return calls | {NATIVE_SERVERS["nvidia/tritonserver"].module: embedder_v2_sample}
