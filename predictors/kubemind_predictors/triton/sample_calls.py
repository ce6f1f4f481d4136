"""Ready-to-paste calls for `kubemind serve` (kubemind.local.services): the embedder."""

from __future__ import annotations

from kubemind.processes import python_command


def embedder_v2_sample(http_url: str, grpc_address: str) -> str:
    """minilm over v2 REST, in Triton's own signature (BYTES [n, 1]): what stock Triton serves too."""
    body = '{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2, 1], "data": ["A man is eating food.", "A man eats bread."]}]}'
    return f"curl -s -X POST {http_url}/v2/models/minilm/infer -d '{body}' | head -c 300; echo"


def embedder_sample(http_url: str, grpc_address: str) -> str:
    """minilm over v2 REST and through the stock `openai` client."""
    return "\n".join(
        [
            embedder_v2_sample(http_url, grpc_address),
            f"curl -s -X POST {http_url}/openai/v1/embeddings -H 'content-type: application/json' "
            """-d '{"model": "minilm", "input": "hello world"}' | head -c 300; echo""",
            f"{python_command()} - <<'PY'",
            "import numpy as np, openai",
            f"c = openai.OpenAI(base_url='{http_url}/openai/v1', api_key='unused')",
            "d = c.embeddings.create(model='minilm', input=['A man is eating food.', 'A man eats bread.', 'Stocks fell.']).data",
            "v = np.array([e.embedding for e in d]); print(np.round(v @ v.T, 2))",
            "PY",
        ]
    )
