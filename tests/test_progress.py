"""Progress of long loops: a bar on a terminal, exactly one line per loop in a log, nothing when switched off."""

from __future__ import annotations

import io

import pytest
from tqdm.auto import tqdm

from benchmark.core.progress import LineProgress, progress, track


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_line_per_loop_with_count_time_and_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNTHCXR_PROGRESS", raising=False)
    log = io.StringIO()
    for _ in track(range(5000), "scoring real images", "img", stream=log):
        pass
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and "\r" not in log.getvalue()
    assert lines[0].startswith("scoring real images: 5000/5000 img in ") and "img/s" in lines[0]


def test_a_loop_that_stops_early_still_writes_its_line_with_the_count_reached(monkeypatch) -> None:
    monkeypatch.delenv("SYNTHCXR_PROGRESS", raising=False)
    log = io.StringIO()
    for i in track(range(100), "units", "unit", stream=log):
        if i == 9:
            break
    assert log.getvalue().startswith("units: 9/100 unit in ")  # nine finished when the tenth broke off


def test_the_postfix_is_written_at_the_end_of_the_line(monkeypatch) -> None:
    monkeypatch.delenv("SYNTHCXR_PROGRESS", raising=False)
    log = io.StringIO()
    with progress(4, "train epoch 1/3", "batch", stream=log) as bar:
        assert isinstance(bar, LineProgress)
        for _ in range(4):
            bar.update(1)
            bar.set_postfix(loss="0.4100")
    assert log.getvalue().rstrip().endswith("loss=0.4100")


def test_a_terminal_gets_a_tqdm_bar_with_rate_and_eta(monkeypatch) -> None:
    monkeypatch.delenv("SYNTHCXR_PROGRESS", raising=False)
    screen = _Terminal()
    with progress(50, "features", "img", stream=screen) as bar:
        assert isinstance(bar, tqdm)
        bar.update(50)
    assert "50/50" in screen.getvalue() and "img/s" in screen.getvalue()


def test_the_environment_chooses_lines_or_nothing_and_a_wrong_value_names_the_valid_ones(monkeypatch) -> None:
    screen = _Terminal()
    monkeypatch.setenv("SYNTHCXR_PROGRESS", "lines")
    with progress(3, "pairs", "pair", stream=screen) as bar:
        bar.update(3)
    assert screen.getvalue().startswith("pairs: 3/3 pair in ")
    monkeypatch.setenv("SYNTHCXR_PROGRESS", "off")
    quiet = io.StringIO()
    list(track(range(10), "nothing", stream=quiet))
    assert quiet.getvalue() == ""
    monkeypatch.setenv("SYNTHCXR_PROGRESS", "verbose")
    with pytest.raises(ValueError, match="auto, bar, lines, off"):
        progress(1, "x", stream=io.StringIO())


def test_a_display_not_enabled_writes_nothing(monkeypatch) -> None:
    monkeypatch.delenv("SYNTHCXR_PROGRESS", raising=False)
    log = io.StringIO()
    list(track(range(10), "other process", stream=log, enabled=False))
    assert log.getvalue() == ""


def test_an_unnamed_or_empty_loop_writes_nothing(monkeypatch) -> None:
    monkeypatch.setenv("SYNTHCXR_PROGRESS", "lines")
    log = io.StringIO()
    list(track(range(10), "", stream=log))  # a caller that asked for no display
    list(track([], "scoring real images", stream=log))  # nothing to do
    assert log.getvalue() == ""
