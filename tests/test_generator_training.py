"""Specification of benchmark.data.generator_training: the record of what a generator saw, and the overlap check."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmark.data import DataError, read_split_csv
from benchmark.data.generator_training import (
    GeneratorOverlapError,
    check_generator_overlap,
    record_from_arguments,
    resolve,
    training_references,
)


def _split(tmp_path: Path) -> Path:
    frame = pd.DataFrame({
        "image_path": [f"img/{i}.png" for i in range(6)],
        "patient_id": ["a", "a", "b", "c", "d", "e"],
        "split": ["train", "train", "train", "val", "test", "test"],
        "prompt": "x", "class_label": "", "mass": ["1", "0", "1", "0", "1", "0"], "dataset": "padchest",
    })
    frame.to_csv(tmp_path / "split.csv", index=False)
    return tmp_path / "split.csv"


def test_a_record_from_the_train_rows_of_a_split_passes_an_evaluation_on_that_split(tmp_path: Path) -> None:
    csv = _split(tmp_path)
    record = record_from_arguments(f"{csv}:train", None)
    assert record["splits"] == ["train"] and record["n_images"] == 3
    training = resolve(record)
    assert training.patients == {"a", "b"} and len(training.image_paths) == 3
    decision = check_generator_overlap(training, read_split_csv(csv))
    assert decision.columns() == {"generator_training": "split.csv train (2 patients, 3 images)",
                                  "generator_overlap": "none"}
    paths, patients = training_references(training, read_split_csv(csv))
    assert [p.name for p in paths] == ["0.png", "1.png", "2.png"] and patients == ["a", "a", "b"]


def test_a_generator_trained_on_every_split_is_refused_naming_the_held_out_patients(tmp_path: Path) -> None:
    csv = _split(tmp_path)
    training = resolve(record_from_arguments(f"{csv}:train+val+test", None))
    with pytest.raises(GeneratorOverlapError, match=r"trained on 3 test/val patient\(s\) .*\(c, d, e\)"):
        check_generator_overlap(training, read_split_csv(csv))
    allowed = check_generator_overlap(training, read_split_csv(csv), allow=True)
    assert allowed.generator_overlap.startswith("allowed: the generator was trained on 3")


def test_images_named_in_an_ids_file_are_matched_by_file_name(tmp_path: Path) -> None:
    csv = _split(tmp_path)
    ids = tmp_path / "ids.txt"
    ids.write_text("zz\nimage:/elsewhere/img/5.png\n")
    training = resolve(record_from_arguments(None, str(ids)))
    with pytest.raises(GeneratorOverlapError, match=r"1 test image\(s\)"):
        check_generator_overlap(training, read_split_csv(csv))


def test_without_a_record_nothing_is_checked_and_the_rows_say_unknown(tmp_path: Path) -> None:
    decision = check_generator_overlap(resolve(None), read_split_csv(_split(tmp_path)))
    assert decision.columns() == {"generator_training": "unknown",
                                  "generator_overlap": "not checked: generator training data unknown"}
    assert record_from_arguments(None, None) == "unknown"


def test_a_malformed_record_names_the_manifest(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"somewhere/manifest\.json: generator_training must be"):
        resolve(["a"], where="somewhere/manifest.json")
    with pytest.raises(DataError, match="lists no patients and no images"):
        resolve({"patients": [" "]})
    with pytest.raises(DataError, match="unknown split 'tests'"):
        record_from_arguments(f"{_split(tmp_path)}:tests", None)
