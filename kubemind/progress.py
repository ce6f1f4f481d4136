"""Progress bars for long steps (register's upload, the initializer's download, `kubemind rag
index`): tqdm on stderr, and only when stderr is a terminal, so logs, pipes and CI output stay clean."""

from __future__ import annotations

import shutil
import sys
import threading
from types import TracebackType
from typing import IO

from tqdm import tqdm


def is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


class ByteProgress:
    """A byte-counting bar that several threads may advance (parallel downloads)."""

    unit = "B"
    scaled = True

    def __init__(self, total: int, description: str, stream: IO[str] | None = None):
        stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()
        size = shutil.get_terminal_size((100, 24))
        self._bar = tqdm(
            total=total,
            desc=description,
            unit=self.unit,
            unit_scale=self.scaled,
            unit_divisor=1024,
            file=stream,
            disable=not is_terminal(stream),
            leave=True,
            # A terminal that reports no size (a bare pty, some CI runners) makes tqdm hide the
            # bar: fall back to 100x24.
            ncols=min(size.columns or 100, 120),
            nrows=size.lines or 24,
        )

    @property
    def enabled(self) -> bool:
        return not self._bar.disable

    def add(self, count: int) -> None:
        with self._lock:
            self._bar.update(count)

    def close(self) -> None:
        with self._lock:
            self._bar.close()

    def __enter__(self) -> ByteProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class CountProgress(ByteProgress):
    """The same bar counting items (documents indexed) instead of bytes."""

    unit = " docs"
    scaled = False


__all__ = ["ByteProgress", "CountProgress", "is_terminal"]
