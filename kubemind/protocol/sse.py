"""Server-sent events of OpenAI and OIP generate streams: writing them, and reading one.

kubemind's streamed replies are `data: <JSON object>` events, each followed by a blank line; an
OpenAI-shaped stream ends with `data: [DONE]` (after an error event too). The pipeline writes
them (`encode_event`); what reads them back (the router's and RAG's LLM steps, the drift service
adding up a logged stream) reads one event with `read_event`, so every reader agrees on what an
event says: its text, finish reason, usage and error.

What to do with a line that holds no event, the `[DONE]` marker and an event that does not
parse is each reader's own policy, not this module's: a router step stops at `[DONE]` and fails
on a bad event (its answer is broken); the drift service skips a bad event (one undecodable
event should not cost the reply's other events).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

DONE = "[DONE]"
"""The data of OpenAI's end-of-stream event."""

SSE_DONE = f"data: {DONE}\n\n"
"""OpenAI's end-of-stream marker: the last event of every OpenAI-shaped stream, an error's too
(stock clients read until it; vLLM sends it after an error event as well)."""


def encode_event(item: dict[str, Any] | str) -> bytes:
    """One event as sent: a dict as `data: <json>`, a string (preformatted, `SSE_DONE`) as is."""
    if isinstance(item, str):
        return item.encode()
    return b"data: " + orjson.dumps(item) + b"\n\n"


class BadEvent(ValueError):
    """An event's data is not a JSON object of a stream (or its `choices` are not objects)."""


@dataclass(frozen=True)
class StreamEvent:
    """What one event of a stream says."""

    shape: str | None
    """"openai" (it has `choices`), "generate" (it has `text_output`), or None (neither: an
    error event, or an event of another kind)."""
    deltas: tuple[tuple[str, str | None], ...] = ()
    """The text it adds and its finish reason: one per OpenAI choice (the chat delta's
    `content`, or a completion's `text`), the one `text_output` of a generate event."""
    usage: dict[str, Any] | None = None
    """OpenAI's `usage` (the last chunk's, with `stream_options.include_usage`)."""
    error: str | None = None
    """The message of an error event (`{"error": "..."}` or `{"error": {"message": "..."}}`)."""

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.deltas)


def event_data(line: str) -> str | None:
    """The data of one line of a stream when it is a `data:` line (stripped), else None (a
    blank separator, a comment, `event:`/`id:` fields)."""
    if not line.startswith("data:"):
        return None
    return line[5:].strip()


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def read_event(data: str | bytes) -> StreamEvent:
    """One event's data (`event_data` of its line, not `[DONE]`); BadEvent when it is not a
    stream event."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadEvent(f"not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise BadEvent(f"not a JSON object: {_str(data)[:120]}")
    error = _error_message(event["error"]) if "error" in event else None
    choices = event.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or not all(isinstance(choice, dict) for choice in choices):
            raise BadEvent("choices: not a list of objects")
        deltas = []
        for choice in choices:
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            deltas.append((_str(content or choice.get("text")), choice.get("finish_reason")))
        usage = event.get("usage")
        return StreamEvent("openai", tuple(deltas), usage if isinstance(usage, dict) and usage else None, error)
    if "text_output" in event:
        return StreamEvent("generate", ((_str(event["text_output"]), event.get("finish_reason")),), error=error)
    return StreamEvent(None, error=error)


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        return _str(error.get("message", orjson.dumps(error).decode()))
    return _str(error)


__all__ = ["DONE", "SSE_DONE", "BadEvent", "StreamEvent", "encode_event", "event_data", "read_event"]
