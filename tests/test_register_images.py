"""Registering existing image folders as synthetic sets: layouts, labels, and every bad file reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.data import DataError
from benchmark.data.register_images import main, register_images
from benchmark.data.synthetic import read_synthetic_set
from tests.conftest import write_png


def _png(path: Path, value: int = 0) -> Path:
    return write_png(path, np.full((24, 20), value, dtype=np.uint8))


def test_class_subfolders_become_labels_and_class_labels(tmp_path: Path) -> None:
    for cls, n in (("cardiomegaly", 2), ("normal", 3)):
        for i in range(n):
            _png(tmp_path / "ddpm" / cls / f"{i}.png", i)
    assert main(["--images", str(tmp_path / "ddpm"), "--out", str(tmp_path / "set"), "--classes",
                 "normal,cardiomegaly", "--model-name", "ddpm-64"]) == 0
    synthetic = read_synthetic_set(tmp_path / "set")
    assert synthetic.classes == ["normal", "cardiomegaly"] and synthetic.model_name == "ddpm-64"
    assert synthetic.labels().sum(axis=0).tolist() == [3, 2]
    assert sorted(synthetic.frame["class_label"]) == ["0", "0", "0", "1", "1"]
    assert all(p.is_file() for p in synthetic.image_paths())
    assert synthetic.manifest["layout"] == "class-folders" and synthetic.manifest["registered"] is True


def test_flat_folder_with_labels_csv_keeps_prompts_and_source_rows(tmp_path: Path) -> None:
    for i in range(3):
        _png(tmp_path / "pngs" / f"img{i}.png")
    pd.DataFrame({"file": ["img0.png", "img1.png", "img2.png"], "prompt": ["x", "y", "z"],
                  "source_row": ["4", "7", "9"], "soft tissue mass": ["1", "0", ""]}).to_csv(tmp_path / "l.csv",
                                                                                                 index=False)
    frame = register_images(tmp_path / "pngs", tmp_path / "set", labels_csv=tmp_path / "l.csv")
    assert frame["source_row"].tolist() == ["4", "7", "9"]
    synthetic = read_synthetic_set(tmp_path / "set")
    assert synthetic.classes == ["soft tissue mass"]
    assert synthetic.frame["soft tissue mass"].tolist() == ["1", "0", ""]


def test_flat_folder_without_labels_registers_unlabelled_images(tmp_path: Path) -> None:
    for i in range(2):
        _png(tmp_path / "pngs" / f"{i}.png")
    frame = register_images(tmp_path / "pngs", tmp_path / "set")
    assert len(frame) == 2 and read_synthetic_set(tmp_path / "set").classes == []


def test_every_bad_file_is_listed_and_nothing_is_written(tmp_path: Path) -> None:
    _png(tmp_path / "pngs" / "good.png")
    (tmp_path / "pngs" / "empty.png").write_bytes(b"")
    (tmp_path / "pngs" / "text.png").write_text("not an image")
    with pytest.raises(DataError) as error:
        register_images(tmp_path / "pngs", tmp_path / "set")
    message = str(error.value)
    assert "2 of 3 images cannot be used" in message
    assert "empty.png: file is empty" in message and "text.png: not an image file" in message
    assert not (tmp_path / "set").exists()


def test_labels_csv_that_misses_an_image_is_refused(tmp_path: Path) -> None:
    _png(tmp_path / "pngs" / "a.png")
    _png(tmp_path / "pngs" / "b.png")
    pd.DataFrame({"file": ["a.png"], "mass": ["1"]}).to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(DataError, match=r"1 images in .* have no row, e.g. 'b.png'"):
        register_images(tmp_path / "pngs", tmp_path / "set", labels_csv=tmp_path / "l.csv")


def test_a_labels_csv_without_the_file_column_names_the_closest_column(tmp_path: Path) -> None:
    _png(tmp_path / "pngs" / "a.png")
    pd.DataFrame({"File": ["a.png"], "mass": ["1"]}).to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(DataError, match=r"l\.csv: missing column 'file'; did you mean 'File'\?"):
        register_images(tmp_path / "pngs", tmp_path / "set", labels_csv=tmp_path / "l.csv")
    assert not (tmp_path / "set").exists()
