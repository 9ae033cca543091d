"""Memorisation check (benchmark.fidelity.memorisation): planted copies of training images found, new patients not.

Training set: 160 phantom images of 80 patients (64 px PNGs). Synthetic set: exact, left-right flipped and
2-pixel-shifted copies of training images, and phantoms of 12 new patients. Features come from a seeded random-init
xrv DenseNet loaded through xrv's loader (at 32 px); pixels are the 64 px images as float.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.demo.phantoms import make_phantom_images
from benchmark.fidelity.distances import wilson_interval
from benchmark.fidelity.features import extract_features, load_extractor
from benchmark.fidelity.memorisation import (
    aligned_pixel_neighbours,
    calibrate,
    memorisation_check,
    pixel_variants,
    summary_row,
    write_report,
)
from tests.conftest import write_png
from tests.test_features import random_xrv_extractor

SIZE = 64
COPIED = (0, 13, 26, 39, 52, 65, 78, 91, 104, 117, 130, 143)  # training images planted: 4 exact, 4 flipped, 4 shifted


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclass
class Planted:
    train_paths: list[Path]
    train_patients: list[str]
    synthetic_paths: list[Path]
    kinds: list[str]  # exact / flipped / shifted / new, per synthetic image
    train_features: np.ndarray
    train_pixels: np.ndarray
    synthetic_features: np.ndarray
    synthetic_pixels: np.ndarray


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    root = tmp_path_factory.mktemp("planted")
    train, frame = make_phantom_images(80, 2, SIZE, seed=0)
    new, _ = make_phantom_images(12, 1, SIZE, seed=0, patient_offset=1000)
    copies = train[list(COPIED)]
    synthetic = np.concatenate([copies[:4], copies[4:8, :, ::-1], np.roll(copies[8:], (2, -2), axis=(1, 2)), new])
    kinds = ["exact"] * 4 + ["flipped"] * 4 + ["shifted"] * 4 + ["new"] * 12
    train_paths = [write_png(root / "train" / f"t{i:03d}.png", image) for i, image in enumerate(train)]
    synthetic_paths = [write_png(root / "synthetic" / f"s{i:03d}.png", np.ascontiguousarray(image))
                       for i, image in enumerate(synthetic)]
    extractor = random_xrv_extractor(root / "xrv", image_size=32, seed=0)
    pixels = load_extractor("pixels", image_size=SIZE, device="cpu")

    def run(paths: list[Path], ex) -> np.ndarray:
        return extract_features(paths, ex, cache_dir=root / "cache", batch_size=64).features

    return Planted(train_paths, frame["patient_id"].tolist(), synthetic_paths, kinds,
                   run(train_paths, extractor), run(train_paths, pixels).reshape(-1, SIZE, SIZE),
                   run(synthetic_paths, extractor), run(synthetic_paths, pixels).reshape(-1, SIZE, SIZE))


@pytest.fixture(scope="module")
def checked(planted: Planted):
    return memorisation_check(planted.synthetic_features, planted.synthetic_pixels, planted.train_features,
                              planted.train_pixels, planted.train_patients, device="cpu")


def test_planted_copies_are_flagged_and_new_patients_are_not(planted: Planted, checked) -> None:
    kinds = np.array(planted.kinds)
    flagged = checked.frame["flagged"].to_numpy()
    assert flagged[kinds != "new"].all()
    assert not flagged[kinds == "new"].any()
    closeness = checked.frame["closeness"].to_numpy()
    assert closeness[kinds != "new"].max() < 0.05  # copies sit far inside the threshold ...
    assert closeness[kinds == "new"].min() > 1.05  # ... new patients outside it
    row = summary_row(checked)
    assert row["memorised_share"] == pytest.approx(12 / 24)
    assert row["memorisation_n_synthetic"] == 24 and row["memorisation_n_train"] == 160


def test_copies_are_matched_to_their_original_with_the_alignment_that_undoes_them(planted: Planted,
                                                                                  checked) -> None:
    frame = checked.frame
    np.testing.assert_array_equal(frame["pixel_nn"].to_numpy()[:12], COPIED)
    np.testing.assert_allclose(frame["pixel_rmse"].to_numpy()[:12], 0.0, atol=1e-3)
    assert set(frame["pixel_alignment"][:4]) == {"dy=+0 dx=+0"}
    assert set(frame["pixel_alignment"][4:8]) == {"flip dy=+0 dx=+0"}
    assert set(frame["pixel_alignment"][8:12]) == {"dy=+2 dx=-2"}
    np.testing.assert_array_equal(frame["feature_nn"].to_numpy()[:4], COPIED[:4])
    assert (frame["feature_similarity"].to_numpy()[:4] > 0.9999).all()


def test_thresholds_are_calibrated_on_pairs_of_different_patients(planted: Planted) -> None:
    """Duplicated images of one patient must not drag the thresholds to 'identical'."""
    features = np.concatenate([planted.train_features, planted.train_features])
    pixels = np.concatenate([planted.train_pixels, planted.train_pixels])
    patients = planted.train_patients * 2  # every image twice, under its own patient
    by_patient = calibrate(features, pixels, patients, quantile=0.999, device="cpu")
    assert by_patient.pixel_threshold > 0.02 and by_patient.feature_threshold < 0.999
    one_patient_per_image = calibrate(features, pixels, [f"p{i}" for i in range(len(patients))], quantile=0.999,
                                      device="cpu")
    assert one_patient_per_image.pixel_threshold == pytest.approx(0.0, abs=1e-3)


def test_pixel_distances_are_computed_in_float_not_in_wrapping_uint8() -> None:
    query = np.full((1, 8, 8), 10, dtype=np.uint8)
    ref = np.stack([np.full((8, 8), 250, dtype=np.uint8), np.full((8, 8), 30, dtype=np.uint8)])
    rmse, index, _ = aligned_pixel_neighbours(query, ref, max_shift=1, flip=True, device="cpu")
    assert index[0] == 1  # uint8 subtraction would put 250 at distance 16, nearer than 30 at 20
    assert rmse[0] == pytest.approx(20.0)


def test_aligned_pixel_search_equals_brute_force_over_flips_and_shifts() -> None:
    rng = np.random.default_rng(0)
    query, ref = rng.random((7, 12, 12)), rng.random((9, 12, 12))
    rmse, index, variant = aligned_pixel_neighbours(query, ref, max_shift=2, flip=True, device="cpu",
                                                    query_chunk=60, ref_chunk=4)
    variants = pixel_variants(2, True)
    for i in range(len(query)):
        best = (np.inf, -1, -1)
        for v, (flipped, dy, dx) in enumerate(variants):
            source = query[i][:, ::-1] if flipped else query[i]
            crop = source[2 + dy:10 + dy, 2 + dx:10 + dx]
            for j in range(len(ref)):
                d = np.sqrt(np.mean((crop - ref[j][2:10, 2:10]) ** 2))
                if d < best[0] - 1e-9:
                    best = (d, j, v)
        assert rmse[i] == pytest.approx(best[0], rel=1e-5)
        assert (index[i], variant[i]) == best[1:]


def test_held_out_real_images_give_the_chance_level_beside_the_synthetic_share(planted: Planted) -> None:
    """The 12 new-patient phantoms play held-out real images; the synthetic set is the 12 copies."""
    result = memorisation_check(planted.synthetic_features[:12], planted.synthetic_pixels[:12],
                                planted.train_features, planted.train_pixels, planted.train_patients,
                                real_features=planted.synthetic_features[12:],
                                real_pixels=planted.synthetic_pixels[12:], device="cpu")
    row = summary_row(result)
    assert row["memorised_share"] == 1.0
    assert row["memorised_share_real"] == 0.0 and row["memorisation_n_real"] == 12
    # every share has its Wilson interval, and a share of 0 (or 1) still gets one that is not a point
    assert row["memorised_share_real_ci_low"] == 0.0 and 0.2 < row["memorised_share_real_ci_high"] < 0.3
    for space in ("feature", "pixel"):
        share = row[f"memorised_share_{space}"]
        assert (row[f"memorised_share_{space}_ci_low"], row[f"memorised_share_{space}_ci_high"]) == \
            pytest.approx(wilson_interval(share * 12, 12))


def test_report_lists_every_synthetic_image_and_draws_the_closest_pairs(planted: Planted, checked,
                                                                      tmp_path: Path) -> None:
    written = write_report(checked, tmp_path / "run", planted.synthetic_paths, planted.train_paths,
                           planted.train_patients, load=lambda p: np.asarray(Image.open(p), np.float32) / 255.0,
                           n_pairs=6)
    table = pd.read_csv(written["csv"])
    assert len(table) == 24
    assert table["synthetic_path"].tolist() == [str(p) for p in planted.synthetic_paths]
    assert table.loc[0, "pixel_nn_path"] == str(planted.train_paths[COPIED[0]])
    assert table.loc[0, "pixel_nn_patient"] == planted.train_patients[COPIED[0]]
    summary = pd.read_json(written["json"], typ="series")
    assert summary["memorised_share"] == 0.5 and summary["memorisation_quantile"] == 0.999
    with Image.open(written["png"]) as grid:
        assert grid.format == "PNG" and grid.height > grid.width  # six stacked pairs
