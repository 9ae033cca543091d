"""Which real test labels a utility stage scores against: ``all`` of them, or only those a physician read.

PadChest labels 27% of its images by a physician and the rest by a report labeller (the split's ``label_source``
column, from ``make_splits.sh padchest``). ``--test-labels physician`` scores the pretrained and the retrained
stages against the physician-read rows only. Such rows answer a different question from ``all`` (fewer, cleaner
labels), so they are written under their own key: ``test_labels=physician`` is appended to ``extra_info`` and the
``test_labels`` column says which labels every row used.

May import: :mod:`benchmark.core`, :mod:`benchmark.data`.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmark.core.errors import DataError
from benchmark.data import SplitTable

TEST_LABELS: tuple[str, ...] = ("all", "physician")


def check_test_labels(test_labels: str) -> str:
    """``test_labels`` if it is one of :data:`TEST_LABELS`, else ValueError."""
    if test_labels not in TEST_LABELS:
        raise ValueError(f"--test-labels {test_labels!r}: use {' or '.join(TEST_LABELS)}")
    return test_labels


def test_label_mask(test: SplitTable, test_labels: str) -> np.ndarray:
    """``(n,)`` bool: the rows of ``test`` whose labels come from ``test_labels`` (all True for ``all``).

    DataError naming the file when ``physician`` is asked of a split with no ``label_source`` column, or with no
    physician-read row."""
    if check_test_labels(test_labels) == "all":
        return np.ones(len(test.frame), dtype=bool)
    if "label_source" not in test.frame.columns:
        raise DataError(f"{test.source}: --test-labels physician needs a label_source column (PadChest splits made "
                        "by make_splits.sh padchest have one)")
    mask = (test.frame["label_source"].astype(str).str.strip() == "physician").to_numpy()
    if not mask.any():
        raise DataError(f"{test.source}: no {test.frame['split'].iloc[0] if len(test.frame) else 'test'} row has "
                        "label_source 'physician'")
    return mask


def keyed_extra_info(extra_info: str, test_labels: str) -> str:
    """``extra_info`` as written in the rows: physician-only figures get ``test_labels=physician`` appended, so they
    never replace the rows scored against all labels."""
    if check_test_labels(test_labels) == "all":
        return extra_info
    tag = f"test_labels={test_labels}"
    parts = extra_info.split(";") if extra_info else []  # empty parts kept: unkeyed_extra_info gives it back as is
    return ";".join(parts if tag in parts else [*parts, tag])


def unkeyed_extra_info(extra_info: str) -> str:
    """``extra_info`` as the user gave it: :func:`keyed_extra_info` undone (for finding a run's own rows)."""
    return ";".join(part for part in extra_info.split(";") if not part.startswith("test_labels="))


def add_test_labels_argument(parser: argparse.ArgumentParser) -> None:
    """``--test-labels all|physician`` (shared by the pretrained and retrained stages)."""
    parser.add_argument("--test-labels", default="all", choices=TEST_LABELS,
                        help="physician: score only test images whose labels a physician read (PadChest's "
                             "MethodLabel, the split's label_source column); rows get their own key "
                             "(extra_info + ';test_labels=physician'). Default: all")
