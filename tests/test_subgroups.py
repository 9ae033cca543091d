"""Subgroups of the pretrained-classifier utility (``--by sex / age-band / view``): who belongs where, the figures
per subgroup, the false-negative-rate gap's coverage (seeded simulation) and the stage's rows on real NIH images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchxrayvision as xrv

from benchmark.core.results import read_results
from benchmark.data import load_image, read_split_csv
from benchmark.data.subgroups import age_band, subgroup_values, synthetic_subgroups
from benchmark.data.synthetic import write_synthetic_set
from benchmark.models.classifiers import place_in_xrv_cache
from benchmark.utility.cli import main as utility_main
from benchmark.utility.subgroups import subgroup_table
from tests.conftest import shared_data


def test_sex_age_band_and_view_are_read_as_written_in_the_split() -> None:
    frame = pd.DataFrame({"sex": ["Male", "f", "", "O"], "age": ["39", "40", "79.5", "n/a"],
                          "view": ["pa", "AP", "", "Lateral"]})
    assert subgroup_values(frame, "sex").tolist() == ["M", "F", "", "O"]
    assert subgroup_values(frame, "age-band").tolist() == ["<40", "40-59", "60-79", ""]
    assert subgroup_values(frame, "view").tolist() == ["PA", "AP", "", "LATERAL"]
    assert [age_band(a, (50,)) for a in (10, 50, 90)] == ["<50", "50+", "50+"]
    with pytest.raises(ValueError, match="use one of sex, age-band, view"):
        subgroup_values(frame, "race")


def test_a_synthetic_image_takes_its_subgroup_from_its_own_column_else_its_source_row_else_its_patient() -> None:
    split = pd.DataFrame({"patient_id": ["a", "a", "b", "c"], "sex": ["F", "F", "M", ""]})
    synthetic = pd.DataFrame({"sex": ["M", "", "", ""], "source_row": ["0", "2", "", ""],
                              "patient_id": ["a", "", "a", "c"]})
    assert synthetic_subgroups(synthetic, split, "sex").tolist() == ["M", "M", "F", ""]


def _patients(rng: np.random.Generator, fnr: float, n_patients: int, tag: str) -> tuple[list, list, list]:
    """Three images per patient, half positive; a patient's positives are missed with a patient-level probability
    drawn from Beta with mean ``fnr`` (so images of one patient are correlated)."""
    y, s, ids = [], [], []
    for p in range(n_patients):
        miss = rng.beta(2 * fnr, 2 * (1 - fnr))
        for _ in range(3):
            positive = rng.random() < 0.5
            y.append(int(positive))
            s.append((0.2 if rng.random() < miss else 0.8) if positive else 0.6 * rng.random())
            ids.append(f"{tag}{p}")
    return y, s, ids


def test_the_fnr_gap_interval_covers_the_true_gap_when_patients_have_several_images() -> None:
    rng = np.random.default_rng(0)
    replicates, covered = 200, 0
    for _ in range(replicates):
        (yf, sf, cf), (ym, sm, cm) = _patients(rng, 0.2, 40, "f"), _patients(rng, 0.3, 50, "m")
        table = subgroup_table({"real": np.array(yf + ym, float)[:, None]}, {"real": np.array(sf + sm)[:, None]},
                               {"real": np.array(["F"] * len(yf) + ["M"] * len(ym), dtype=object)}, ["x"],
                               {"x": 0.5}, clusters={"real": np.array(cf + cm)})
        row = table[table["gap_reference"] != ""].iloc[0]
        truth = {"F": 0.2, "M": 0.3}
        covered += row["fnr_gap_ci_low"] <= truth[row["subgroup"]] - truth[row["gap_reference"]] <= \
            row["fnr_gap_ci_high"]
    # measured 0.957 (0.91 when the patients are ignored)
    assert covered / replicates >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / replicates)


def test_a_subgroup_with_too_few_positives_gets_its_figures_without_intervals_and_says_so() -> None:
    y = np.array([1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], float)
    s = np.linspace(0, 1, y.size)
    groups = np.array(["F"] * 5 + ["M"] * 11, dtype=object)
    table = subgroup_table({"real": y[:, None]}, {"real": s[:, None]}, {"real": groups}, ["x"], {"x": 0.5}).set_index(
        "subgroup")
    assert (table.loc["F", "n"], table.loc["F", "n_positive"]) == (5, 2)
    assert math.isnan(table.loc["F", "fnr_ci_low"]) and "FNR without interval: 2 positives" in \
        table.loc["F", "subgroup_note"]
    assert table.loc["F", "gap_reference"] == "M" and math.isnan(table.loc["F", "fnr_gap_ci_low"])
    assert table.loc["F", "fnr_gap"] == pytest.approx(table.loc["F", "fnr"] - table.loc["M", "fnr"])


def test_the_stage_writes_subgroup_rows_beside_its_own_for_real_nih_images(tmp_path: Path) -> None:
    labels = pd.read_csv(shared_data("cxr", "labels.csv"))
    nih = labels[(labels["source"] == "nih_cxr14") & labels["sex"].isin(["M", "F"])]
    nih = pd.concat([nih[nih["Effusion"] == 1].head(12), nih[nih["Effusion"] == 0].head(24)])
    split = pd.DataFrame({"image_path": [str(shared_data("cxr", p)) for p in nih["path"]],
                          "patient_id": nih["patient_id"].astype(str), "split": "test", "prompt": "PA chest x-ray",
                          "class_label": "", "pleural effusion": nih["Effusion"].astype(int).astype(str),
                          "sex": nih["sex"], "age": nih["age"], "dataset": "padchest"})
    split.to_csv(tmp_path / "real.csv", index=False)
    table = read_split_csv(tmp_path / "real.csv")
    images = np.stack([np.asarray(load_image(p).pixels[:64, :64]) for p in table.image_paths()])
    rows = table.frame[["prompt", "pleural effusion"]].copy()
    rows.insert(1, "source_row", range(len(rows)))  # no sex column: taken from the source rows
    rows.insert(2, "seed", "")
    write_synthetic_set(tmp_path / "synthetic", images, rows, {"model": "crops", "classes": table.classes})
    cache = tmp_path / "xrv"
    torch.manual_seed(0)
    place_in_xrv_cache(xrv.models.DenseNet(weights=None), "nih", cache)
    assert utility_main(["--real", str(tmp_path / "real.csv"), "--synthetic", str(tmp_path / "synthetic"),
                         "--classifier", "nih", "--xrv-cache-dir", str(cache), "--results-dir",
                         str(tmp_path / "results"), "--n-resamples", "1000", "--batch-size", "8", "--num-workers",
                         "0", "--stage", "pretrained", "--by", "sex,age-band"]) == 0
    found = read_results("utility_pretrained_subgroups", tmp_path / "results")
    assert len(read_results("utility_pretrained", tmp_path / "results")) == 2  # the stage's own rows, unchanged
    run = tmp_path / "results" / "runs" / found["run_id"].iat[0]
    assert len(pd.read_csv(run / "metrics.csv")) == 2 and len(pd.read_csv(run / "subgroups.csv")) == len(found)
    sex = found[found["subgroup_by"] == "sex"]
    for source in ("real", "synthetic"):
        mine = sex[sex["image_source"] == source].set_index("subgroup")
        assert set(mine.index) == set(split["sex"])
        for value in mine.index:
            members = split[split["sex"] == value]
            assert int(mine.loc[value, "n"]) == len(members)
            assert int(mine.loc[value, "n_positive"]) == int((members["pleural effusion"] == "1").sum())
        assert sorted(mine["gap_reference"].tolist()) == ["", mine["gap_reference"].max()]  # one reference
    bands = set(found.loc[found["subgroup_by"] == "age-band", "subgroup"])
    assert bands and bands <= {"<40", "40-59", "60-79", "80+"}
    assert (found["model_name"] == "crops").all() and (found["classifier"] == "densenet121-res224-nih").all()
    assert found["ci_method"].str.contains("MOVER").all()


def test_an_unknown_subgroup_variable_is_refused_before_anything_runs(tmp_path: Path, capsys) -> None:
    assert utility_main(["--real", str(tmp_path / "none.csv"), "--synthetic", str(tmp_path), "--stage",
                         "pretrained", "--by", "ethnicity"]) != 0
    assert "--by 'ethnicity': use one or more of sex, age-band, view" in capsys.readouterr().err


def test_the_report_shows_the_subgroup_rows_with_their_intervals_and_gaps(tmp_path: Path) -> None:
    from benchmark.core.results import run_dir, write_run_rows
    from benchmark.report import build_report

    rng = np.random.default_rng(3)
    (yf, sf, cf), (ym, sm, cm) = _patients(rng, 0.2, 30, "f"), _patients(rng, 0.4, 30, "m")
    table = subgroup_table({"real": np.array(yf + ym, float)[:, None]}, {"real": np.array(sf + sm)[:, None]},
                           {"real": np.array(["F"] * len(yf) + ["M"] * len(ym), dtype=object)},
                           ["soft tissue mass"], {"soft tissue mass": 0.5}, clusters={"real": np.array(cf + cm)})
    for column, value in (("classifier", "densenet121-res224-pc"), ("extra_info", ""), ("model_name", "ddpm")):
        table.insert(0, column, value)
    results = tmp_path / "results"
    write_run_rows("utility_pretrained_subgroups", table, run_dir("pretrained-test", results), results_dir=results)
    markdown = build_report(results, tmp_path / "report").markdown.read_text()
    section = markdown.split("## Pretrained", 1)[1].split("\n## ", 1)[0]
    assert "| model | classifier | images | class | subgroup | n (positives) | AUROC [95% CI] | FNR [95% CI]" in section
    gap = table[table["gap_reference"] != ""].iloc[0]
    line = next(row for row in section.splitlines() if f"sex={gap['subgroup']}" in row)
    assert f"{gap['fnr_gap']:.3f} [{gap['fnr_gap_ci_low']:.3f}, {gap['fnr_gap_ci_high']:.3f}]" in line
    assert f"| {gap['gap_reference']} |" in line
