"""The prompt: retrieved chunks, the question, and the user's features, through one template."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubemind.errors import InvalidSettings
from kubemind_transformers.rag.store import Hit

DEFAULT_TEMPLATE = (
    "Answer the question using only the context from the Python documentation below. "
    "The reader's Python expertise is {expertise}; answer in at most {length} words.\n\n"
    "Context:\n{context}\n\nQuestion: {question}"
)
FIELDS = ("context", "question", "expertise", "length")
CHUNK_CHARACTERS = 1200  # per chunk in the prompt: four chunks stay well inside a 2k-token window


def check_template(template: str) -> str:
    try:
        template.format(**{name: "" for name in FIELDS})
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidSettings(f"--prompt_template: fields are {', '.join(FIELDS)}: {exc}") from None
    return template


def build_prompt(template: str, question: str, hits: Sequence[Hit], user: dict[str, Any]) -> str:
    context = "\n\n".join(f"[{i}] ({hit.source}) {hit.text[:CHUNK_CHARACTERS]}" for i, hit in enumerate(hits, 1))
    return template.format(
        context=context,
        question=question,
        expertise=user.get("expertise_level", "intermediate"),
        length=user.get("preferred_answer_length", 80),
    )


__all__ = ["DEFAULT_TEMPLATE", "build_prompt", "check_template"]
