"""The report as a document: sections made of blocks (tables, figures, notes) and what
:func:`benchmark.report.render.build_report` returns. The section builders of :mod:`benchmark.report.tables` and
:mod:`benchmark.report.figures` fill it; :mod:`benchmark.report.render` turns it into Markdown and HTML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

#: sample images per class and model in the report's grids
DEFAULT_SAMPLES = 6


@dataclass
class Table:
    """A table: header and rows of display text; ``caption`` above it."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    export: str = ""  # set by the renderer: ``tables/<name>`` (``.csv`` and ``.tex`` beside the report)


@dataclass
class Figure:
    """A PNG written under ``<out>/figures/``; embedded in the HTML page, linked relatively from the Markdown."""

    path: Path
    caption: str
    collapse: bool = False  # an image grid: folded away on the page (and in print), shown in full in samples.html


@dataclass
class Note:
    """A paragraph. ``kind``: ``text``, ``missing`` (something the report could not show) or ``warning``.
    Text between backticks is shown as code."""

    text: str
    kind: str = "text"


Block = Table | Figure | Note


@dataclass
class Section:
    """One section of the report: ``status`` is ``present`` or ``missing`` (its stage has not run); ``missing``
    lists what could not be shown (a run folder, a figure, an image) while the rest rendered."""

    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    status: str = "present"
    missing: list[str] = field(default_factory=list)

    def add(self, block: Block) -> None:
        self.blocks.append(block)

    def note(self, text: str) -> None:
        self.blocks.append(Note(text))

    def warn(self, text: str) -> None:
        self.blocks.append(Note(text, "warning"))

    def lack(self, text: str) -> None:
        """Something this section cannot show; recorded in :attr:`missing` and shown in the report."""
        self.missing.append(text)
        self.blocks.append(Note(text, "missing"))

    def not_run(self, text: str) -> None:
        """The section's input does not exist: the whole section is missing."""
        self.status = "missing"
        self.lack(text)

    @property
    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


@dataclass
class ReportResult:
    """What :func:`build_report` wrote: the two documents, every figure, the sections (in report order) and the
    leaderboard as numbers (display columns; NaN where a stage is missing)."""

    markdown: Path
    html: Path
    figures: list[Path]
    sections: list[Section]
    leaderboard: pd.DataFrame
    seconds: float = 0.0
    tables: list[Path] = field(default_factory=list)  # every table as CSV and LaTeX under tables/
    grids_page: Path | None = None  # every image grid in full (samples.html), when there is one

    def section(self, section_id: str) -> Section:
        return next(s for s in self.sections if s.id == section_id)
