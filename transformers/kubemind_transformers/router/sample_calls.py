"""Ready-to-paste calls for `kubemind serve` (kubemind.local.services): the cv-to-llm graph."""

from __future__ import annotations

from kubemind.processes import python_command


def router_sample(http_url: str, grpc_address: str) -> str:
    """skimage's coffee photo and a question through the graph with the stock OpenAI client,
    streamed; then a question without an image (the Switch sends it straight to the LLM)."""
    return "\n".join(
        [
            f"{python_command()} - <<'PY'",
            "import base64, io, skimage.data, PIL.Image",
            "from openai import OpenAI",
            "jpeg = io.BytesIO(); PIL.Image.fromarray(skimage.data.coffee()).save(jpeg, format='JPEG')",
            "url = 'data:image/jpeg;base64,' + base64.b64encode(jpeg.getvalue()).decode()",
            f"c = OpenAI(base_url='{http_url}/openai/v1', api_key='unused')",
            "parts = [{'type': 'text', 'text': 'Describe the photo.'}, {'type': 'image_url', 'image_url': {'url': url}}]",
            "for chunk in c.chat.completions.create(model='cv-to-llm', messages=[{'role': 'user', 'content': parts}], stream=True):",
            "    print(chunk.choices[0].delta.content or '', end='', flush=True)",
            "print()",
            "r = c.chat.completions.create(model='cv-to-llm', messages=[{'role': 'user', 'content': 'What is the capital of France?'}])",
            "print(r.choices[0].message.content)",
            "PY",
        ]
    )
