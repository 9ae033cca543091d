"""Progress of long loops (images, pairs, resamples, units): a tqdm bar with rate and ETA on a terminal, one line
per loop in a log.

``SYNTHCXR_PROGRESS`` chooses: ``auto`` (default: a bar when the stream is a terminal, else one line when the loop
ends), ``bar``, ``lines`` or ``off``. A log therefore gets ``"<what>: 1200/1200 img in 81.3 s (14.8 img/s)"`` once
per loop, never a bar redrawn thousands of times.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, Protocol, TypeVar

MODES = ("auto", "bar", "lines", "off")
T = TypeVar("T")


class Progress(Protocol):
    """What callers use of a progress display (tqdm's names)."""

    def update(self, n: int = 1) -> Any: ...

    def set_postfix(self, **values: Any) -> Any: ...

    def close(self) -> None: ...


class LineProgress:
    """Counts silently; on :meth:`close` writes one line: what, how many of how many, time and rate."""

    def __init__(self, total: int | None, desc: str, unit: str, stream: IO[str]):
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.n = 0
        self.start = time.perf_counter()
        self.closed = False
        self.postfix = ""

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values: Any) -> None:
        """Figures written at the end of the line (e.g. ``loss=0.41``), as tqdm shows them beside the bar."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        seconds = time.perf_counter() - self.start
        count = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        rate = f" ({self.n / seconds:.3g} {self.unit}/s)" if seconds > 0 and self.n else ""
        postfix = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {count} {self.unit} in {seconds:.1f} s{rate}{postfix}", file=self.stream, flush=True)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_mode(stream: IO[str] | None = None) -> str:
    """``bar``, ``lines`` or ``off``: ``SYNTHCXR_PROGRESS``, with ``auto`` resolved by whether ``stream`` (stderr by
    default) is a terminal. An unknown value stops with the valid ones."""
    mode = os.environ.get("SYNTHCXR_PROGRESS", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"SYNTHCXR_PROGRESS={mode!r}; use one of {', '.join(MODES)}")
    if mode == "auto":
        stream = stream if stream is not None else sys.stderr
        isatty = getattr(stream, "isatty", None)
        return "bar" if isatty is not None and isatty() else "lines"
    return mode


def progress(total: int | None, desc: str, unit: str = "img", *, enabled: bool = True,
             stream: IO[str] | None = None, leave: bool = True) -> Any:
    """A progress display for ``total`` steps of ``unit`` (a context manager with ``update(n)`` and ``close()``):
    a tqdm bar on a terminal, a :class:`LineProgress` in logs, nothing when ``enabled`` is false (e.g. on every
    process but the main one), ``desc`` is empty (the caller asked for no display), there is nothing to do
    (``total`` 0) or the mode is ``off``. ``leave=False`` clears a finished bar from the terminal (a log keeps its
    line)."""
    stream = stream if stream is not None else sys.stderr
    mode = progress_mode(stream) if enabled and desc and total != 0 else "off"
    if mode == "off":
        return _Silent()
    if mode == "lines":
        return LineProgress(total, desc, unit, stream)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=stream, dynamic_ncols=True, leave=leave)


def track(items: Iterable[T], desc: str, unit: str = "it", *, total: int | None = None, enabled: bool = True,
          stream: IO[str] | None = None) -> Iterator[T]:
    """``items`` one by one, counted on a :func:`progress` display that is closed when the loop ends or breaks."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress(total, desc, unit, enabled=enabled, stream=stream) as bar:
        for item in items:
            yield item
            bar.update(1)
