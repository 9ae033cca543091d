"""FRD, the Fréchet radiomics distance (``benchmark.fidelity.frd``): frd-score's own figure, its interval, its rows.

Images: real NIH chest X-rays from ``../shared/data/cxr`` (as "real") against images of other sources there
(as "synthetic"); the stage test uses the phantom split and set of ``test_image_quality_cli``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.core.results import read_results
from benchmark.data import DataError
from benchmark.fidelity import frd
from tests.conftest import shared_data
from tests.test_image_quality_cli import run_stage, stage  # noqa: F401  (the phantom stage, module-scoped)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _shared(source: str, n: int) -> list[Path]:
    labels = pd.read_csv(shared_data("cxr", "labels.csv"))
    return [shared_data("cxr", p) for p in labels[labels["source"] == source].head(n)["path"]]


def test_frd_equals_frd_scores_own_compute_frd_on_the_same_files() -> None:
    from frd_score.frd import compute_frd

    real, other = _shared("nih_cxr14", 10), _shared("covid_ieee8023", 10)
    real_features, names = frd.radiomics_features(real)
    other_features, _ = frd.radiomics_features(other)
    assert real_features.shape == (10, len(names)) and len(names) > 100
    ours = frd.frd_value(real_features, other_features)
    theirs = compute_frd([[str(p) for p in real], [str(p) for p in other]], num_workers=1)
    assert ours == pytest.approx(float(theirs), abs=1e-6)
    # the same source on both sides is closer than another source
    same = frd.frd_value(real_features[:5], real_features[5:])
    assert same < ours


def test_an_unreadable_image_stops_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "cut.png"
    bad.write_bytes(_shared("nih_cxr14", 1)[0].read_bytes()[:200])
    with pytest.raises(DataError, match=r"cut\.png: radiomics features cannot be extracted"):
        frd.radiomics_features([*_shared("nih_cxr14", 2), bad])


def test_the_patient_jackknife_interval_covers_the_expected_frd_at_its_nominal_rate() -> None:
    # Raw "radiomics" vectors from Gaussians (the extraction is not what is tested): 60 real and 60 synthetic
    # patients with 2 correlated images each, the synthetic mean shifted. The target is E[FRD] at these sample
    # sizes (Monte Carlo over 1,000 draws); the interval is the delete-a-group jackknife over patients.
    rng = np.random.default_rng(0)
    dims, patients = 8, 60
    shift = np.r_[0.6, np.zeros(dims - 1)]

    def draw(offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        centre = np.repeat(rng.normal(size=(patients, dims)), 2, axis=0)
        return offset + 0.7 * centre + 0.7 * rng.normal(size=(2 * patients, dims)), np.repeat(np.arange(patients), 2)

    target = np.mean([frd.frd_value(draw(0)[0], draw(shift)[0]) for _ in range(1000)])
    hits = []
    for _ in range(300):
        (real, rc), (synthetic, sc) = draw(0), draw(shift)
        found = frd.frd_jackknife(real, synthetic, real_clusters=rc, synthetic_clusters=sc, n_groups=20, seed=0)
        hits.append(found.ci_low <= target <= found.ci_high)
    coverage = float(np.mean(hits))
    assert 0.91 <= coverage <= 0.99, coverage


def test_nan_rows_are_left_out_and_counted_and_few_patients_give_no_interval() -> None:
    rng = np.random.default_rng(1)
    real, synthetic = rng.normal(size=(30, 4)), rng.normal(size=(30, 4)) + 1
    real[3, 1] = np.nan
    found = frd.frd_jackknife(real, synthetic, real_clusters=np.arange(30) // 10, synthetic_clusters=None)
    assert found.n_real == 29 and found.n_synthetic == 30
    assert "1 real image(s) with a NaN radiomics feature left out" in "; ".join(found.notes)
    assert math.isnan(found.ci_low) and "no FRD interval" in "; ".join(found.notes)  # 3 real patients < 5
    assert math.isfinite(found.frd)


def test_the_stage_writes_frd_per_class_with_its_interval_and_n(stage: dict[str, Path],  # noqa: F811
                                                                tmp_path: Path) -> None:
    assert run_stage(stage, tmp_path / "results", "--per-class", "--frd", "--no-diversity", "--no-memorisation",
                     "--no-detectability") == 0
    table = read_results("image_quality_metrics", tmp_path / "results").set_index("class")
    overall = table.loc["overall"]
    assert int(overall["frd_n_real"]) == int(overall["n_real"]) and int(overall["frd_n_synthetic"]) == 44
    low, value, high = (float(overall[c]) for c in ("frd_ci_low", "frd", "frd_ci_high"))
    assert low < value < high
    assert all(table[c].astype(str).str.len().gt(0).all() for c in ("frd", "frd_n_real"))
