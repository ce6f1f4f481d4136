"""Progress bars show on a terminal and stay silent anywhere else (logs, pipes, CI)."""

from __future__ import annotations

import io
import threading

from kubemind.progress import ByteProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_that_threads_can_advance() -> None:
    stream = Terminal()
    with ByteProgress(4000, "download m", stream=stream) as progress:
        assert progress.enabled
        threads = [threading.Thread(target=lambda: [progress.add(10) for _ in range(100)]) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    text = stream.getvalue()
    assert "download m" in text and "100%" in text


def test_no_terminal_no_output() -> None:
    stream = io.StringIO()
    with ByteProgress(100, "upload m", stream=stream) as progress:
        assert not progress.enabled
        progress.add(100)
    assert stream.getvalue() == ""
