"""FID on real chest X-rays orders degradations: real-vs-real < real-vs-blurred < real-vs-noise.

The 595 NIH ChestX-ray14 images of ../shared/data/cxr are split into two patient-disjoint halves, written as 32 px
PNGs (the size the extractor runs at in tests); the second half is also written blurred and with additive noise.
Features come from a seeded random-init xrv DenseNet placed in a temporary xrv cache and loaded through xrv's
loader: random convolutional features already separate these image statistics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.ndimage import gaussian_filter

from benchmark.data import load_image
from benchmark.fidelity.distances import fid
from benchmark.fidelity.features import extract_features
from tests.conftest import shared_data, write_png
from tests.test_features import random_xrv_extractor

SIZE = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def nih_halves(out: Path) -> dict[str, list[Path]]:
    """Two patient-disjoint halves of the NIH images as 32 px PNGs, and the second half blurred and noised."""
    labels = pd.read_csv(shared_data("cxr", "labels.csv"))
    nih = labels[labels["source"] == "nih_cxr14"]
    patients = np.array(sorted(nih["patient_id"].unique()))
    np.random.default_rng(0).shuffle(patients)
    first = set(patients[: len(patients) // 2])
    rng = np.random.default_rng(1)
    sets: dict[str, list[Path]] = {"a": [], "b": [], "b_blurred": [], "b_noise": []}
    for row in nih.itertuples():
        image = load_image(shared_data("cxr", row.path))
        small = np.asarray(torch.nn.functional.interpolate(
            torch.from_numpy(image.to_float())[None, None], size=(SIZE, SIZE), mode="area")[0, 0])
        name = Path(row.path).name
        if row.patient_id in first:
            sets["a"].append(write_png(out / "a" / name, np.round(small * 255).astype(np.uint8)))
            continue
        variants = {"b": small, "b_blurred": gaussian_filter(small, sigma=1.0),
                    "b_noise": np.clip(small + rng.normal(0.0, 0.1, small.shape), 0.0, 1.0)}
        for key, pixels in variants.items():
            sets[key].append(write_png(out / key / name, np.round(pixels * 255).astype(np.uint8)))
    return sets


def test_fid_orders_real_then_blurred_then_noisy_nih_images(tmp_path: Path) -> None:
    sets = nih_halves(tmp_path / "nih")
    assert len(sets["a"]) + len(sets["b"]) == 595 and min(len(sets["a"]), len(sets["b"])) > 250
    extractor = random_xrv_extractor(tmp_path / "xrv", image_size=SIZE, seed=0)
    feats = {key: extract_features(paths, extractor, cache_dir=tmp_path / "cache", batch_size=64).features
             for key, paths in sets.items()}
    real_vs_real = fid(feats["a"], feats["b"], device="cpu")
    real_vs_blurred = fid(feats["a"], feats["b_blurred"], device="cpu")
    real_vs_noise = fid(feats["a"], feats["b_noise"], device="cpu")
    assert real_vs_real < real_vs_blurred < real_vs_noise
    assert real_vs_blurred > 2 * real_vs_real  # clear margins, not a coin toss
    assert real_vs_noise > 2 * real_vs_blurred
