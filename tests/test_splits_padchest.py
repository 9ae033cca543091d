"""PadChest split builder on the real metadata shipped inside torchxrayvision (160,861 rows)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from benchmark.data import DataError, read_split_csv
from benchmark.data.splits.padchest import build_padchest_split, parse_labels, read_metadata
from tests.conftest import REPO_ROOT

CLASSES = ["soft tissue mass", "cardiomegaly", "normal"]


@pytest.fixture(scope="module")
def metadata() -> pd.DataFrame:
    return read_metadata()


@pytest.fixture(scope="module")
def all_views_split(metadata: pd.DataFrame) -> pd.DataFrame:
    return build_padchest_split(metadata, CLASSES, views=(), seed=0).frame


def test_metadata_shipped_with_torchxrayvision_has_all_rows(metadata: pd.DataFrame) -> None:
    assert len(metadata) == 160861


def test_labels_are_trimmed_and_deduplicated() -> None:
    assert parse_labels("['pulmonary mass', ' pulmonary mass', 'normal']") == ["pulmonary mass", "normal"]
    assert parse_labels("['']") == [] and parse_labels(float("nan")) == []


def test_class_counts_match_padchest_exactly(all_views_split: pd.DataFrame) -> None:
    positives = all_views_split[CLASSES].astype(float).sum()
    assert positives["soft tissue mass"] == 141  # every image PadChest labels 'soft tissue mass'
    assert positives["cardiomegaly"] == 15022
    assert positives["normal"] == 50390  # labels exactly ['normal'] after trimming (50,616 mention it)


def test_soft_tissue_mass_is_not_substring_matched(metadata: pd.DataFrame) -> None:
    frame = build_padchest_split(metadata, ["soft tissue mass", "pulmonary mass"], views=()).frame
    both = ((frame["soft tissue mass"] == 1) & (frame["pulmonary mass"] == 1)).sum()
    assert frame["pulmonary mass"].sum() == 1039
    assert both < 10  # different findings, rarely on the same image
    with pytest.raises(DataError, match=r"unknown class 'mass '.*close PadChest labels"):
        build_padchest_split(metadata, ["mass "], views=())


def test_unknown_class_suggests_padchest_spelling(metadata: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"unknown class 'cardiomegally'.*'cardiomegaly'"):
        build_padchest_split(metadata, ["cardiomegally"])


def test_no_patient_is_in_two_splits(all_views_split: pd.DataFrame) -> None:
    splits_per_patient = all_views_split.groupby("patient_id")["split"].nunique()
    assert (splits_per_patient == 1).all()


def test_rare_class_gets_its_share_in_every_split(all_views_split: pd.DataFrame) -> None:
    mass = all_views_split[all_views_split["soft tissue mass"] == 1]["split"].value_counts(normalize=True)
    assert mass["train"] == pytest.approx(0.7, abs=0.05)
    assert mass["val"] == pytest.approx(0.1, abs=0.04)
    assert mass["test"] == pytest.approx(0.2, abs=0.05)
    images = all_views_split["split"].value_counts(normalize=True)
    assert images["train"] == pytest.approx(0.7, abs=0.01)


def test_same_seed_same_split_other_seed_differs(metadata: pd.DataFrame, all_views_split: pd.DataFrame) -> None:
    again = build_padchest_split(metadata, CLASSES, views=(), seed=0).frame
    pd.testing.assert_frame_equal(again, all_views_split)
    other = build_padchest_split(metadata, CLASSES, views=(), seed=1).frame
    assert (other["split"] != all_views_split["split"]).mean() > 0.2


def test_row_order_of_metadata_does_not_change_the_split(metadata: pd.DataFrame) -> None:
    sample = metadata.sample(n=20000, random_state=3)
    forward = build_padchest_split(sample, ["cardiomegaly", "normal"], views=()).frame
    backward = build_padchest_split(sample.iloc[::-1], ["cardiomegaly", "normal"], views=()).frame
    merged = forward.merge(backward, on="image_path", suffixes=("", "_b"))
    assert len(merged) == len(forward)
    assert (merged["split"] == merged["split_b"]).all()


def test_filters_views_age_and_paths(metadata: pd.DataFrame) -> None:
    built = build_padchest_split(metadata, CLASSES, views=("PA",), min_age=18, flat=True)
    frame = built.frame
    assert set(frame["view"]) == {"PA"}
    assert frame["age"].astype(int).min() >= 18
    assert not frame["image_path"].str.contains("/").any()
    assert built.dropped["no labels"] > 0 and built.dropped["age unknown or < 18"] > 0
    nested = build_padchest_split(metadata, ["soft tissue mass"], views=("PA",)).frame
    assert nested["image_path"].str.fullmatch(r"\d+/.+\.png").all()


def test_prompt_and_class_label(all_views_split: pd.DataFrame) -> None:
    mass = all_views_split[all_views_split["soft tissue mass"] == 1].iloc[0]
    assert mass["class_label"] == "0"
    assert "soft tissue mass" in mass["prompt"] and "chest x-ray showing" in mass["prompt"]
    normal = all_views_split[all_views_split["normal"] == 1]
    assert (normal["class_label"] == "2").all()


def test_synonyms_add_exact_labels_only(metadata: pd.DataFrame) -> None:
    plain = build_padchest_split(metadata, ["soft tissue mass"], views=()).frame
    widened = build_padchest_split(metadata, ["soft tissue mass"], synonyms={"soft tissue mass": ["breast mass"]},
                                   views=()).frame
    assert widened["soft tissue mass"].sum() > plain["soft tissue mass"].sum()


def test_make_splits_script_writes_a_readable_split(tmp_path: Path) -> None:
    out = tmp_path / "pc.csv"
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "make_splits.sh"), "padchest", "--classes", ",".join(CLASSES), "--views", "PA",
         "--seed", "0", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "soft tissue mass" in result.stdout and "test" in result.stdout
    table = read_split_csv(out)
    assert table.dataset == "padchest" and table.classes == CLASSES
    assert "label_source" in table.frame.columns and "label_source" not in table.classes
    assert table.meta["case_mix"].startswith("enriched")  # built without --keep-other


def test_each_row_says_who_read_its_labels(all_views_split: pd.DataFrame) -> None:
    # PadChest's MethodLabel: 35 of the 141 soft tissue mass images were labelled by a physician
    mass = all_views_split[all_views_split["soft tissue mass"].astype(float) == 1]
    assert mass["label_source"].value_counts().to_dict() == {"labeller": 106, "physician": 35}
    assert set(all_views_split["label_source"]) == {"physician", "labeller"}
