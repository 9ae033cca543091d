"""CheXGenBench's synthetic deliverable (a CSV with ``chexpert_labels`` dicts + an image folder) registered as it is.

The CSV is built from the first rows of CheXGenBench's MIMIC-CXR prompt file in ``../shared/data/chexgenbench``
with a ``synthetic_filename`` column added, as their generation scripts write it; the images are small PNGs.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.data import read_split_csv
from benchmark.data.register_images import main, register_images
from benchmark.data.splits.chexgenbench import CHEXPERT_LABELS
from benchmark.data.synthetic import read_synthetic_set
from tests.conftest import shared_data, write_png

N_ROWS = 24


@pytest.fixture
def deliverable(tmp_path: Path) -> dict[str, Path]:
    """``assets/CSV/sana.csv`` + ``assets/synthetic_images/`` as CheXGenBench leaves them, and its prompts file."""
    prompts = pd.read_csv(shared_data("chexgenbench", "training_data_20K_prompts.csv.gz"), nrows=N_ROWS, dtype=str,
                          keep_default_na=False)
    prompts.to_csv(tmp_path / "prompts.csv", index=False)
    images = tmp_path / "assets" / "synthetic_images"
    for i in range(N_ROWS):
        write_png(images / f"{i:05d}.png", np.full((24, 24), 10 * i % 255, dtype=np.uint8))
    csv = prompts.assign(synthetic_filename=[f"{i:05d}.png" for i in range(N_ROWS)])
    (tmp_path / "assets" / "CSV").mkdir(parents=True)
    csv.to_csv(tmp_path / "assets" / "CSV" / "sana.csv", index=False)
    return {"root": tmp_path, "csv": tmp_path / "assets" / "CSV" / "sana.csv", "images": images,
            "prompts": tmp_path / "prompts.csv"}


def _expected(cell: str, policy: dict[str, float]) -> list[str]:
    labels = ast.literal_eval(cell)
    out = []
    for name in CHEXPERT_LABELS:
        value = labels.get(name)
        value = policy.get("none", np.nan) if value is None else policy.get("-1", np.nan) if value == -1.0 else value
        out.append("" if np.isnan(value) else str(int(value)))
    return out


def test_their_csv_and_folder_register_with_labels_prompts_and_source_patients(deliverable) -> None:
    assert main(["--images", str(deliverable["images"]), "--labels", str(deliverable["csv"]), "--out",
                 str(deliverable["root"] / "set"), "--model-name", "sana-0.6b"]) == 0
    synthetic = read_synthetic_set(deliverable["root"] / "set")
    source = pd.read_csv(deliverable["csv"], dtype=str, keep_default_na=False)
    assert synthetic.classes == list(CHEXPERT_LABELS)
    assert synthetic.frame["img_savename"].tolist() == [f"images/{f}" for f in source["synthetic_filename"]]
    assert synthetic.frame["prompt"].tolist() == source["annotated_prompt"].tolist()
    for i in range(N_ROWS):
        assert synthetic.frame.loc[i, list(CHEXPERT_LABELS)].tolist() == _expected(source.at[i, "chexpert_labels"], {})
    assert synthetic.frame["patient_id"].tolist() == source["patientID"].tolist()
    assert synthetic.frame["source_id"].tolist() == source["id"].tolist()
    assert synthetic.frame["source_row"].tolist() == [""] * N_ROWS  # no split given: nothing to point at
    assert synthetic.manifest["layout"] == "chexgenbench-csv"
    assert synthetic.manifest["label_policy"] == {"uncertain": "ignore", "unmentioned": "unknown"}
    assert np.isnan(synthetic.labels()).any() and (synthetic.labels() == 1).any()


def test_their_label_handling_is_one_flag_pair_as_for_make_splits(deliverable) -> None:
    source = pd.read_csv(deliverable["csv"], dtype=str, keep_default_na=False)
    cell = ast.literal_eval(source.at[0, "chexpert_labels"])
    cell["Edema"] = -1.0  # an uncertain label, as MIMIC's CheXpert labeller writes them
    source.at[0, "chexpert_labels"] = repr(cell)
    source.to_csv(deliverable["csv"], index=False)
    frame = register_images(deliverable["images"], deliverable["root"] / "set", labels_csv=deliverable["csv"],
                            uncertain="zeros", unmentioned="negative")
    for i in range(N_ROWS):
        assert frame.loc[i, list(CHEXPERT_LABELS)].tolist() == \
            _expected(source.at[i, "chexpert_labels"], {"none": 0.0, "-1": 0.0})
    assert frame.at[0, "Edema"] == "0"
    assert "" not in frame[list(CHEXPERT_LABELS)].to_numpy()


def test_with_the_split_each_image_points_at_its_source_row_by_path(deliverable, tmp_path: Path) -> None:
    split_csv = tmp_path / "mimic.csv"
    from benchmark.data.make_splits import main as make_splits

    assert make_splits(["chexgenbench", "--csv", str(deliverable["prompts"]), "--out", str(split_csv),
                        "--image-root", str(tmp_path)]) == 0
    split = read_split_csv(split_csv)
    frame = register_images(deliverable["images"], tmp_path / "set", labels_csv=deliverable["csv"], split=split)
    source = pd.read_csv(deliverable["csv"], dtype=str, keep_default_na=False)
    rows = [int(r) for r in frame["source_row"]]
    assert [split.frame.at[r, "image_path"] for r in rows] == source["path"].tolist()
    assert frame["patient_id"].tolist() == [split.frame.at[r, "patient_id"] for r in rows]
    assert frame["split"].tolist() == [split.frame.at[r, "split"] for r in rows]
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert manifest["matched_to_split"] == {"path": N_ROWS, "prompt": 0, "ambiguous prompt": 0, "unmatched": 0}
    assert manifest["prompts_csv"] == str(split_csv)


def test_without_paths_images_are_matched_by_a_prompt_only_one_split_row_has(deliverable, tmp_path: Path) -> None:
    split_csv = tmp_path / "mimic.csv"
    from benchmark.data.make_splits import main as make_splits

    assert make_splits(["chexgenbench", "--csv", str(deliverable["prompts"]), "--out", str(split_csv),
                        "--image-root", str(tmp_path)]) == 0
    source = pd.read_csv(deliverable["csv"], dtype=str, keep_default_na=False)
    source.at[3, "annotated_prompt"] = source.at[2, "annotated_prompt"]  # a prompt two images share, unknown below
    source.at[5, "annotated_prompt"] = "a prompt no split row has"
    source.drop(columns=["path", "patientID", "id"]).to_csv(deliverable["csv"], index=False)
    frame = register_images(deliverable["images"], tmp_path / "set", labels_csv=deliverable["csv"],
                            split=read_split_csv(split_csv))
    split = read_split_csv(split_csv)
    assert frame.at[0, "source_row"] == "0" and frame.at[0, "patient_id"] == split.frame.at[0, "patient_id"]
    assert frame.at[3, "source_row"] == "2"  # the split still has this prompt once: row 2's
    assert frame.at[5, "source_row"] == "" and frame.at[5, "patient_id"] == ""
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert manifest["matched_to_split"] == {"path": 0, "prompt": N_ROWS - 1, "ambiguous prompt": 0, "unmatched": 1}


def test_a_patient_that_contradicts_the_matched_split_row_stops_naming_the_row(deliverable, tmp_path: Path,
                                                                               capsys) -> None:
    split_csv = tmp_path / "mimic.csv"
    from benchmark.data.make_splits import main as make_splits

    assert make_splits(["chexgenbench", "--csv", str(deliverable["prompts"]), "--out", str(split_csv),
                        "--image-root", str(tmp_path)]) == 0
    source = pd.read_csv(deliverable["csv"], dtype=str, keep_default_na=False)
    source.at[4, "patientID"] = "someone-else"
    source.to_csv(deliverable["csv"], index=False)
    assert main(["--images", str(deliverable["images"]), "--labels", str(deliverable["csv"]), "--out",
                 str(tmp_path / "set"), "--split", str(split_csv)]) == 1
    error = capsys.readouterr().err
    assert str(deliverable["csv"]) in error and "row 5: patient 'someone-else'" in error
    assert not (tmp_path / "set").exists()


def test_a_csv_without_their_image_column_says_which_names_it_looked_for(deliverable) -> None:
    source = pd.read_csv(deliverable["csv"], dtype=str, keep_default_na=False)
    source.rename(columns={"synthetic_filename": "fname"}).to_csv(deliverable["csv"], index=False)
    with pytest.raises(Exception, match="synthetic_filename or img_savename"):
        register_images(deliverable["images"], deliverable["root"] / "set", labels_csv=deliverable["csv"])
    frame = register_images(deliverable["images"], deliverable["root"] / "set", labels_csv=deliverable["csv"],
                            file_col="fname")
    assert len(frame) == N_ROWS
