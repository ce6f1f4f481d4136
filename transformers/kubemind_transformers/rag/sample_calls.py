"""Ready-to-paste call for `kubemind serve` (kubemind.local.services): a question to the RAG service."""

from __future__ import annotations

from kubemind.processes import python_command


def rag_sample(http_url: str, grpc_address: str) -> str:
    """Ask about the Python reference with the stock openai client; print the answer and its sources."""
    return "\n".join(
        [
            f"{python_command()} - <<'PY'",
            "from openai import OpenAI",
            f"c = OpenAI(base_url='{http_url}/openai/v1', api_key='unused')",
            "r = c.chat.completions.create(model='rag', max_tokens=64, temperature=0, user='alice',",
            "    messages=[{'role': 'user', 'content': 'What does the assert statement do?'}])",
            "print(r.choices[0].message.content)",
            "print([s['source'] for s in r.model_extra['sources']])",
            "PY",
        ]
    )
