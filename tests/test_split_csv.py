"""Reading, validating and writing split CSVs: every bad input stops with a message naming file, row, column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.data import DataError, read_split_csv, write_split_csv


def _edit(split_dir: Path, change) -> Path:
    path = split_dir / "split.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    edited = change(frame)
    (frame if edited is None else edited).to_csv(path, index=False)
    return path


def test_valid_split_reads_with_classes_labels_and_paths(split_dir: Path) -> None:
    table = read_split_csv(split_dir / "split.csv")
    assert table.classes == ["mass", "cardiomegaly"]
    assert table.dataset == "unknown"
    labels = table.labels()
    assert labels.shape == (6, 2)
    assert labels[:, 0].tolist() == [0, 1, 0, 1, 0, 1]
    assert np.isnan(labels[3, 1]) and np.nansum(labels[:, 1]) == 0
    assert table.image_paths()[0] == split_dir / "images" / "img0.png"
    assert len(table.subset("val").frame) == 2


def test_missing_column_is_named(split_dir: Path) -> None:
    path = _edit(split_dir, lambda f: f.drop(columns=["patient_id"]))
    with pytest.raises(DataError, match=r"split\.csv: missing column 'patient_id'"):
        read_split_csv(path)
    renamed = _edit(split_dir, lambda f: f.assign(PatientID="p1"))  # the column under another spelling
    with pytest.raises(DataError, match=r"missing column 'patient_id'; did you mean 'PatientID'\?"):
        read_split_csv(renamed)


def test_bad_split_value_names_row_column_and_value(split_dir: Path) -> None:
    def change(frame: pd.DataFrame) -> None:
        frame.loc[4, "split"] = "testing"

    path = _edit(split_dir, change)
    with pytest.raises(DataError, match=r"split\.csv: row 5 \(line 6\): column 'split' has value 'testing'"):
        read_split_csv(path)


def test_label_that_is_not_binary_names_row_column_and_value(split_dir: Path) -> None:
    def change(frame: pd.DataFrame) -> None:
        frame.loc[1, "cardiomegaly"] = "-1"

    path = _edit(split_dir, change)
    with pytest.raises(DataError, match=r"row 2 \(line 3\): label column 'cardiomegaly' has value '-1'"):
        read_split_csv(path)


def test_patient_in_two_splits_is_refused(split_dir: Path) -> None:
    def change(frame: pd.DataFrame) -> None:
        frame.loc[2, "patient_id"] = "p1"

    path = _edit(split_dir, change)
    with pytest.raises(DataError, match=r"patient 'p1' appears in more than one split .*val in row 3"):
        read_split_csv(path)


def test_duplicate_image_row_is_refused(split_dir: Path) -> None:
    def change(frame: pd.DataFrame) -> None:
        frame.loc[1, "image_path"] = "images/img0.png"

    path = _edit(split_dir, change)
    with pytest.raises(DataError, match=r"image 'images/img0.png' is listed twice, in row 1 .* and row 2"):
        read_split_csv(path)


def test_unknown_class_name_is_refused_with_the_known_ones(split_dir: Path) -> None:
    with pytest.raises(DataError, match=r"unknown class 'soft tissue mass'.*label columns: mass, cardiomegaly"):
        read_split_csv(split_dir / "split.csv", classes=["soft tissue mass"])


def test_empty_csv_zero_bytes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: the CSV is empty"):
        read_split_csv(tmp_path / "empty.csv")


def test_header_only_csv_is_refused(split_dir: Path) -> None:
    path = _edit(split_dir, lambda f: f.iloc[0:0])
    with pytest.raises(DataError, match=r"split\.csv: the CSV has no rows"):
        read_split_csv(path)


def test_non_integer_class_label_is_refused(split_dir: Path) -> None:
    def change(frame: pd.DataFrame) -> None:
        frame.loc[0, "class_label"] = "mass"

    path = _edit(split_dir, change)
    with pytest.raises(DataError, match=r"row 1 \(line 2\): column 'class_label' has value 'mass'"):
        read_split_csv(path)


def test_missing_csv_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: split CSV not found"):
        read_split_csv(tmp_path / "nope.csv")


def test_write_then_read_round_trips_with_sidecar(tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "image_path": ["a.png", "b.png"], "patient_id": ["1", "2"], "split": ["train", "test"],
        "prompt": ["x", "y"], "class_label": [0, float("nan")], "effusion": [1.0, float("nan")], "view": ["PA", "AP"],
    })
    path = write_split_csv(frame, tmp_path / "out" / "s.csv", ["effusion"], "nih", {"seed": 3})
    text = path.read_text().splitlines()
    assert text[0] == "image_path,patient_id,split,prompt,class_label,effusion,view,dataset"
    assert text[1] == "a.png,1,train,x,0,1,PA,nih"
    assert text[2] == "b.png,2,test,y,,,AP,nih"
    assert json.loads((tmp_path / "out" / "s.csv.json").read_text())["seed"] == 3
    table = read_split_csv(path)
    assert table.dataset == "nih" and table.classes == ["effusion"]


def test_write_refuses_invalid_frame_and_leaves_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "s.csv"
    target.write_text("keep me\n")
    frame = pd.DataFrame({"image_path": ["a.png"], "patient_id": ["1"], "split": ["holdout"], "prompt": ["x"],
                          "class_label": [""], "effusion": [1]})
    with pytest.raises(DataError, match="'holdout'"):
        write_split_csv(frame, target, ["effusion"], "nih")
    assert target.read_text() == "keep me\n"


def test_sidecar_image_root_is_used(split_dir: Path, tmp_path: Path) -> None:
    (split_dir / "split.csv.json").write_text(json.dumps({"dataset": "demo", "image_root": "/data/x"}))
    table = read_split_csv(split_dir / "split.csv")
    assert table.dataset == "demo"
    assert table.image_paths()[0] == Path("/data/x/images/img0.png")
