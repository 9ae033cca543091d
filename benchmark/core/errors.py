"""The error every stage reports as a clear one-line message: bad input, named by file, row, column and value.

Imports nothing from the harness, so every layer (core, data, stages) can raise and catch it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


class DataError(ValueError):
    """Bad input data: the message names the file and, where it applies, the row, column and value."""


class ImageLoadError(DataError):
    """An image file is missing, empty, truncated or not an image.

    Also built from one message (``ImageLoadError("path: reason")``), as a DataLoader rebuilds an error raised in a
    worker process: the worker's traceback is dropped again, so the caller sees the same one-line message whatever
    ``--num-workers`` is.
    """

    def __init__(self, path: str | Path, reason: str | None = None):
        if reason is None:
            message = str(path)
            if "Original Traceback" in message:  # torch's ExceptionWrapper: keep the original exception's message
                last = [line for line in message.strip().splitlines() if line.strip()][-1]
                message = last.split("ImageLoadError: ", 1)[-1]
            path, _, reason = message.partition(": ")
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def exit_status(work: Callable[[], object]) -> int:
    """A stage CLI's exit status: 0 when ``work()`` returns, 2 when it raises :class:`DataError` (printed as one
    ``error: ...`` line on stderr, no traceback)."""
    try:
        work()
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
