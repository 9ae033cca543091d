"""Shareable reference statistics: what the file holds, FID against it equal to FID against the images, its
interval's coverage (seeded simulation), and refusal of a file made in another feature space or damaged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmark.data import DataError
from benchmark.fidelity.distances import feature_statistics, fid, frechet_distance
from benchmark.fidelity.reference import (
    FORMAT,
    check_extractor,
    load_reference,
    reference_fid,
    reference_statistics,
    save_reference,
)

EXTRACTOR = {"kind": "xrv", "name": "xrv:densenet121-res224-all", "weights": "densenet121-res224-all",
             "fingerprint": "ab" * 32, "preprocessing": "xrv-normalise, centre crop, 224 px", "dim": 6,
             "trained_on": []}


def _saved(tmp_path: Path, real: np.ndarray, patients: np.ndarray) -> Path:
    rows = {"overall": reference_statistics(real, patients), "mass": reference_statistics(real[:20], patients[:20])}
    return save_reference(tmp_path / "mimic_test", rows, {"extractor": EXTRACTOR, "dataset": "mimic-cxr",
                                                          "real_split": "test", "classes": ["mass"]})


def test_the_file_holds_statistics_and_sizes_and_fid_against_it_equals_fid_against_the_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(60, 6)), rng.normal(size=(40, 6)) + 0.5
    patients = np.repeat(np.arange(30), 2)
    path = _saved(tmp_path, real, patients)
    assert path.name == "mimic_test.npz"
    reference = load_reference(path)
    assert reference.header["format"] == FORMAT and reference.header["dataset"] == "mimic-cxr"
    assert (reference.rows["overall"].n, reference.rows["overall"].n_patients) == (60, 30)
    assert (reference.rows["mass"].n, reference.rows["mass"].n_patients) == (20, 10)
    assert set(np.load(path).files) == {"header", "row_names", "mean_0", "cov_0", "mean_1", "cov_1"}  # nothing else
    row = reference_fid(reference.rows["overall"], fake, device="cpu")
    assert row["fid"] == pytest.approx(fid(real, fake, device="cpu"), rel=1e-9)
    assert row["fid_ci_low"] <= row["fid"] <= row["fid_ci_high"] and row["jackknife_groups"] == 20
    assert reference.label == f"mimic_test@{reference.sha256[:8]}"


def test_the_interval_covers_the_expected_fid_against_the_fixed_reference_with_clustered_images() -> None:
    rng = np.random.default_rng(1)
    stats = reference_statistics(rng.normal(size=(200, 8)))

    def draw() -> tuple[np.ndarray, np.ndarray]:  # 60 source patients, 2 correlated synthetic images each
        centres = 0.8 * rng.normal(size=(60, 8))
        return np.repeat(centres, 2, axis=0) + 0.6 * rng.normal(size=(120, 8)) + 0.3, np.repeat(np.arange(60), 2)

    truth = np.mean([frechet_distance(stats.mean, stats.cov, *feature_statistics(draw()[0]), device="cpu")
                     for _ in range(2000)])
    replicates, covered, covered_ignoring = 200, 0, 0
    for rep in range(replicates):
        x, clusters = draw()
        row = reference_fid(stats, x, fake_clusters=clusters, seed=rep, device="cpu")
        covered += row["fid_ci_low"] <= truth <= row["fid_ci_high"]
        plain = reference_fid(stats, x, seed=rep, device="cpu")
        covered_ignoring += plain["fid_ci_low"] <= truth <= plain["fid_ci_high"]
    # measured: 0.95 with whole clusters per jackknife group; 0.84 treating the images as independent
    assert covered / replicates >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / replicates)
    assert covered_ignoring / replicates < 0.92


def test_a_file_made_in_another_feature_space_is_refused_naming_both(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    reference = load_reference(_saved(tmp_path, rng.normal(size=(30, 6)), np.arange(30)))
    check_extractor(reference, EXTRACTOR)
    other = dict(EXTRACTOR, name="inception", fingerprint="cd" * 32)
    with pytest.raises(DataError, match=r"made with features 'xrv:densenet121-res224-all'.*in use is 'inception'"):
        check_extractor(reference, other)
    with pytest.raises(DataError, match="preprocessing"):
        check_extractor(reference, dict(EXTRACTOR, preprocessing="squash to 299 px"))


def test_a_damaged_or_foreign_file_stops_naming_it(tmp_path: Path) -> None:
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"bad\.npz: not a reference statistics file"):
        load_reference(tmp_path / "bad.npz")
    np.savez(tmp_path / "foreign.npz", header=np.array(json.dumps({"format": "other/9"})), row_names=np.array([]))
    with pytest.raises(DataError, match=r"foreign\.npz: format 'other/9'"):
        load_reference(tmp_path / "foreign.npz")
    with pytest.raises(DataError, match=r"missing\.npz: reference statistics file not found"):
        load_reference(tmp_path / "missing.npz")
