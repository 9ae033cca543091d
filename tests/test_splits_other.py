"""CheXGenBench / MIMIC-CXR, any-CSV and class-folder builders, and the shared patient-level assignment."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.data import DataError, read_split_csv, write_split_csv
from benchmark.data.make_splits import main as make_splits_main
from benchmark.data.splits.chexgenbench import build_chexgenbench_split, patient_from_path
from benchmark.data.splits.common import assign_patient_splits, uncertain_label
from benchmark.data.splits.generic import build_csv_split, build_folder_split
from tests.conftest import shared_data, write_png


@pytest.fixture(scope="module")
def chexgenbench() -> pd.DataFrame:
    path = shared_data("chexgenbench", "training_data_20K_prompts.csv.gz")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_chexgenbench_file_parses_with_correct_label_counts(chexgenbench: pd.DataFrame) -> None:
    frame = build_chexgenbench_split(chexgenbench)
    assert len(frame) == 20000
    assert (frame["Pleural Effusion"] == 1).sum() == 4116
    assert (frame["Pleural Effusion"] == 0).sum() == 2306
    assert frame["Pleural Effusion"].isna().sum() == 13578
    assert (frame["No Finding"] == 1).sum() == 8754
    assert (frame.groupby("patient_id")["split"].nunique() == 1).all()
    assert frame["prompt"].iloc[0].startswith("The heart is normal in size")


def test_chexgenbench_patient_from_path_when_no_column(chexgenbench: pd.DataFrame) -> None:
    assert patient_from_path("files/p13/p13801616/s58576484/x.jpg") == "p13801616"
    frame = build_chexgenbench_split(chexgenbench.drop(columns=["patientID"]).head(500))
    assert frame["patient_id"].iloc[0] == "p13801616"


def test_chexgenbench_uncertain_policies() -> None:
    table = pd.DataFrame({"path": ["files/p1/p100001/s1/a.jpg", "files/p1/p100002/s2/b.jpg"],
                          "annotated_prompt": ["a", "b"],
                          "chexpert_labels": ["{'Edema': -1.0}", "{'Edema': None}"]})
    assert np.isnan(build_chexgenbench_split(table, ["Edema"])["Edema"].iloc[0])
    assert build_chexgenbench_split(table, ["Edema"], uncertain="zeros")["Edema"].iloc[0] == 0
    assert build_chexgenbench_split(table, ["Edema"], uncertain="ones")["Edema"].iloc[0] == 1
    assert np.isnan(build_chexgenbench_split(table, ["Edema"], uncertain="ones")["Edema"].iloc[1])


def test_chexgenbench_unmentioned_labels_stay_unknown_or_become_negative_as_chexgenbench_makes_them() -> None:
    table = pd.DataFrame({"path": ["files/p1/p100001/s1/a.jpg", "files/p1/p100002/s2/b.jpg"],
                          "annotated_prompt": ["a", "b"],
                          "chexpert_labels": ["{'Edema': -1.0, 'Fracture': 1.0}", "{'Edema': None}"]})
    default = build_chexgenbench_split(table, ["Edema", "Fracture"])
    assert np.isnan(default["Edema"].iloc[1]) and np.isnan(default["Fracture"].iloc[1])  # None and missing key
    theirs = build_chexgenbench_split(table, ["Edema", "Fracture"], uncertain="zeros", unmentioned="negative")
    assert theirs[["Edema", "Fracture"]].to_numpy().tolist() == [[0.0, 1.0], [0.0, 0.0]]
    kept = build_chexgenbench_split(table, ["Edema"], unmentioned="negative")
    assert np.isnan(kept["Edema"].iloc[0]) and kept["Edema"].iloc[1] == 0  # an uncertain label is not unmentioned
    with pytest.raises(DataError, match="unmentioned-label policy 'zero'"):
        build_chexgenbench_split(table, ["Edema"], unmentioned="zero")


def test_chexgenbench_bad_label_dict_names_the_row() -> None:
    table = pd.DataFrame({"path": ["files/p1/p100001/s1/a.jpg"], "annotated_prompt": ["a"],
                          "chexpert_labels": ["Edema: yes"]})
    with pytest.raises(DataError, match=r"in\.csv: row 1: column 'chexpert_labels' is not a dict"):
        build_chexgenbench_split(table, source="in.csv")


def test_chexgenbench_cli_writes_mimic_dataset(tmp_path: Path) -> None:
    source = tmp_path / "prompts.csv.gz"
    rows = ["id,path,view,chexpert_labels,annotated_prompt"] + [
        f'{i},files/p1{i % 5}/p1{i % 5}000000/s{i}/x{i}.jpg,PA,"{{\'Cardiomegaly\': {float(i % 2)}}}",prompt {i}'
        for i in range(40)]
    source.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    assert make_splits_main(["chexgenbench", "--csv", str(source), "--classes", "Cardiomegaly",
                             "--out", str(tmp_path / "m.csv")]) == 0
    table = read_split_csv(tmp_path / "m.csv")
    assert table.dataset == "mimic-cxr" and table.classes == ["Cardiomegaly"]
    assert table.frame["patient_id"].nunique() == 5


def test_uncertain_label_refuses_other_values() -> None:
    with pytest.raises(DataError, match=r"f\.csv: row 3, column 'x': label value 'maybe'"):
        uncertain_label("maybe", "ignore", "f.csv: row 3, column 'x'")
    assert uncertain_label("1.0", "ignore", "") == 1.0 and np.isnan(uncertain_label("", "ones", ""))


def test_any_csv_with_column_mapping_and_existing_split() -> None:
    table = pd.DataFrame({"file": ["a.png", "b.png", "c.png"], "pid": ["1", "1", "2"],
                          "Eff": ["1", "0", "-1"], "fold": ["train", "train", "test"]})
    frame = build_csv_split(table, image_col="file", patient_col="pid", label_cols="Eff=pleural effusion",
                            split_col="fold", uncertain="zeros")
    assert frame["pleural effusion"].tolist() == [1.0, 0.0, 0.0]
    assert frame["split"].tolist() == ["train", "train", "test"]
    assert frame["prompt"].iloc[0] == "frontal chest x-ray showing pleural effusion"


def test_any_csv_bad_label_and_missing_column_are_named() -> None:
    table = pd.DataFrame({"file": ["a.png", "b.png"], "pid": ["1", "2"], "Eff": ["1", "yes"]})
    with pytest.raises(DataError, match=r"t\.csv: row 2, column 'Eff': label value 'yes'"):
        build_csv_split(table, image_col="file", patient_col="pid", label_cols="Eff", source="t.csv")
    with pytest.raises(DataError, match=r"t\.csv: missing column 'Mass'"):
        build_csv_split(table, image_col="file", patient_col="pid", label_cols="Mass", source="t.csv")


def test_any_csv_empty_patient_is_an_error_unless_asked() -> None:
    table = pd.DataFrame({"file": ["a.png", "b.png"], "pid": ["1", ""], "Eff": ["1", "0"]})
    with pytest.raises(DataError, match=r"t\.csv: row 2: column 'pid' is empty"):
        build_csv_split(table, image_col="file", patient_col="pid", label_cols="Eff", source="t.csv")
    frame = build_csv_split(table, image_col="file", patient_col="pid", label_cols="Eff", missing_patient="image")
    assert frame["patient_id"].tolist() == ["1", "image:b.png"]


def test_existing_split_column_with_patient_leak_is_refused_on_write(tmp_path: Path) -> None:
    table = pd.DataFrame({"file": ["a.png", "b.png"], "pid": ["1", "1"], "Eff": ["1", "0"], "fold": ["train", "test"]})
    frame = build_csv_split(table, image_col="file", patient_col="pid", label_cols="Eff", split_col="fold")
    with pytest.raises(DataError, match="patient '1' appears in more than one split"):
        write_split_csv(frame, tmp_path / "x.csv", ["Eff"], "custom")


def test_folder_with_one_subfolder_per_class(tmp_path: Path) -> None:
    for cls, n in (("normal", 5), ("cardiomegaly", 4)):
        for i in range(n):
            write_png(tmp_path / "imgs" / cls / f"pt{i}_{cls}.png", np.zeros((8, 8), np.uint8))
    assert make_splits_main(["folder", "--images", str(tmp_path / "imgs"), "--patient-regex", r"^(pt\d+)_",
                             "--dataset", "local", "--allow-unknown-dataset", "--out", str(tmp_path / "f.csv")]) == 0
    table = read_split_csv(tmp_path / "f.csv")
    assert table.classes == ["cardiomegaly", "normal"]
    assert table.labels().sum(axis=0).tolist() == [4, 5]
    assert (table.frame.groupby("patient_id")["split"].nunique() == 1).all()
    assert table.frame["patient_id"].nunique() == 5
    assert all(p.is_file() for p in table.image_paths())


def test_folder_without_class_subfolders_is_an_error(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="no class subfolders"):
        build_folder_split(tmp_path)


def test_assignment_is_patient_disjoint_and_follows_fractions() -> None:
    rng = np.random.default_rng(0)
    patients = rng.integers(0, 2000, 6000)
    strata = np.where(rng.random(6000) < 0.02, "rare", "none")
    splits = assign_patient_splits(patients, strata, (0.6, 0.2, 0.2), seed=5)
    frame = pd.DataFrame({"p": patients, "s": splits, "k": strata})
    assert (frame.groupby("p")["s"].nunique() == 1).all()
    share = frame["s"].value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.6, abs=0.02) and share["test"] == pytest.approx(0.2, abs=0.02)
    rare = frame[frame["k"] == "rare"]["s"].value_counts(normalize=True)
    assert rare["train"] == pytest.approx(0.6, abs=0.08) and rare["val"] == pytest.approx(0.2, abs=0.08)


def test_zero_val_fraction_leaves_val_empty() -> None:
    splits = assign_patient_splits(np.arange(100), ["none"] * 100, (0.8, 0.0, 0.2))
    assert "val" not in set(splits)
    with pytest.raises(DataError, match="sum to 1"):
        assign_patient_splits(np.arange(10), ["none"] * 10, (0.8, 0.1, 0.2))
