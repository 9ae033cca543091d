"""``make_splits.sh csv`` on a subset of a CSV (``--where``, ``--filter-col/--filter-value``) and where its relative
image paths are looked up (``--image-root``, else the CSV's own folder), on ``../shared/data/cxr/labels.csv``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmark.data import read_split_csv
from benchmark.data.make_splits import main
from tests.conftest import shared_data

COLUMNS = ["--image-col", "path", "--patient-col", "patient_id", "--label-cols",
           "Effusion=pleural effusion,Cardiomegaly=cardiomegaly", "--view-col", "view", "--missing-patient", "image",
           "--dataset", "mixed-public", "--allow-unknown-dataset"]


def _make(labels: Path, out: Path, *extra: str) -> int:
    return main(["csv", "--csv", str(labels), *COLUMNS, "--out", str(out), *extra])


def test_where_keeps_one_source_and_paths_resolve_against_the_csvs_folder(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    labels = shared_data("cxr", "labels.csv")
    assert _make(labels, tmp_path / "nih.csv", "--where", "source == 'nih_cxr14'") == 0
    source = pd.read_csv(labels, dtype=str, keep_default_na=False)
    n_nih = int((source["source"] == "nih_cxr14").sum())
    assert f"kept {n_nih} of {len(source)} rows" in capsys.readouterr().out
    table = read_split_csv(tmp_path / "nih.csv")  # written elsewhere than the labels: the root is recorded
    assert len(table.frame) == n_nih and set(table.frame["source"]) == {"nih_cxr14"}
    assert all(p.is_file() for p in table.image_paths())
    assert table.meta["selected"]["where"] == "source == 'nih_cxr14'"


def test_numeric_columns_compare_as_numbers_and_filter_col_is_the_same_as_an_equality(tmp_path: Path) -> None:
    labels = shared_data("cxr", "labels.csv")
    assert _make(labels, tmp_path / "old.csv", "--where", "source == 'nih_cxr14' and age >= 60") == 0
    old = read_split_csv(tmp_path / "old.csv").frame
    assert len(old) > 0 and (old["age"].astype(float) >= 60).all()
    assert _make(labels, tmp_path / "eq.csv", "--filter-col", "source", "--filter-value", "nih_cxr14") == 0
    assert _make(labels, tmp_path / "where.csv", "--where", "source == 'nih_cxr14'") == 0
    pd.testing.assert_frame_equal(read_split_csv(tmp_path / "eq.csv").frame,
                                  read_split_csv(tmp_path / "where.csv").frame)


def test_a_misspelt_column_names_the_closest_and_writes_nothing(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    labels = shared_data("cxr", "labels.csv")
    assert _make(labels, tmp_path / "s.csv", "--where", "sorce == 'nih_cxr14'") == 2
    err = capsys.readouterr().err
    assert "no column 'sorce'; did you mean 'source' or" in err and str(labels) in err
    assert _make(labels, tmp_path / "s.csv", "--filter-col", "Source", "--filter-value", "x") == 2
    assert "did you mean 'source'" in capsys.readouterr().err
    assert _make(labels, tmp_path / "s.csv", "--image-col", "pth") == 2  # a column named by a flag
    assert "missing column 'pth'; did you mean 'path'?" in capsys.readouterr().err
    assert _make(labels, tmp_path / "s.csv", "--label-cols", "Cardiomegally=cardiomegaly") == 2
    assert "missing column 'Cardiomegally'; did you mean 'Cardiomegaly'?" in capsys.readouterr().err
    assert _make(labels, tmp_path / "s.csv", "--where", "source == 'no such source'") == 2
    assert "keeps none of its" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_missing_images_stop_naming_the_folder_that_was_tried(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # the labels copied away from their images: the CSV's folder has none of them
    labels = tmp_path / "labels.csv"
    shutil.copy(shared_data("cxr", "labels.csv"), labels)
    nih = ("--where", "source == 'nih_cxr14'")
    assert _make(labels, tmp_path / "s.csv", *nih) == 2
    err = capsys.readouterr().err
    assert f"images not found, relative paths looked up under the CSV's folder {tmp_path} (no --image-root" in err
    assert "nih_cxr14/images/" in err and "give --image-root" in err
    assert _make(labels, tmp_path / "s.csv", *nih, "--image-root", str(tmp_path / "elsewhere")) == 2
    assert f"looked up under --image-root {tmp_path / 'elsewhere'}" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()
    assert _make(labels, tmp_path / "s.csv", *nih, "--image-root", str(shared_data("cxr"))) == 0
    assert all(p.is_file() for p in read_split_csv(tmp_path / "s.csv").image_paths())
