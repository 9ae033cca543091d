"""Diversity (benchmark.fidelity.diversity): MS-SSIM within prompts and across random pairs, real beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

from benchmark.demo.phantoms import make_phantom_images
from benchmark.fidelity.diversity import (
    MSSSIM_BETAS,
    diversity_metrics,
    msssim_betas,
    msssim_note,
    msssim_pairs,
    msssim_scales,
    random_pairs,
    same_prompt_pairs,
)
from tests.conftest import write_png

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = np.stack([gaussian_filter(rng.random((size, size)), 2.0) for _ in range(n)])
    return ((images - images.min()) / (images.max() - images.min())).astype(np.float32)


def test_five_scales_from_176_px_and_fewer_below_with_renormalised_betas() -> None:
    assert msssim_scales(256) == msssim_scales(176) == 5
    assert msssim_scales(175) == 4 and msssim_scales(64) == 3 and msssim_scales(32) == 2
    assert msssim_betas(5) == MSSSIM_BETAS
    assert sum(msssim_betas(3)) == pytest.approx(1.0)
    assert msssim_betas(3)[0] / msssim_betas(3)[1] == pytest.approx(MSSSIM_BETAS[0] / MSSSIM_BETAS[1])
    assert "3 scales" in msssim_note(64) and "all 5 scales" in msssim_note(256)


def test_msssim_pairs_equal_torchmetrics_with_the_scales_that_fit() -> None:
    images = smooth_images(4, 64, seed=0)
    values = msssim_pairs(images, np.array([[0, 1], [2, 3], [1, 1]]), device="cpu")
    expected = multiscale_structural_similarity_index_measure(
        torch.from_numpy(images[[0, 2]])[:, None], torch.from_numpy(images[[1, 3]])[:, None], data_range=1.0,
        betas=msssim_betas(3), reduction="none")
    np.testing.assert_allclose(values[:2], expected.numpy(), rtol=1e-6)
    assert values[2] == pytest.approx(1.0)


def test_same_prompt_pairs_take_up_to_four_images_of_each_prompt() -> None:
    prompts = ["a"] * 6 + ["b"] * 2 + ["c"]
    pairs, owner = same_prompt_pairs(prompts, per_prompt=4, max_prompts=None, seed=0)
    assert len(pairs) == 6 + 1 and sorted(set(owner.tolist())) == [0, 1]
    assert all(prompts[i] == prompts[j] and i != j for i, j in pairs)
    assert len(np.unique(pairs[owner == 0])) == 4
    limited, _ = same_prompt_pairs(prompts, per_prompt=4, max_prompts=1, seed=0)
    assert len(limited) in (1, 6)


def test_random_pairs_are_distinct_and_cover_all_pairs_of_a_small_set() -> None:
    pairs = random_pairs(100, 50, seed=1)
    assert len({tuple(p) for p in pairs.tolist()}) == 50 and (pairs[:, 0] < pairs[:, 1]).all()
    assert len(random_pairs(5, 50, seed=1)) == 10


def test_repeated_images_of_a_prompt_score_one_and_varied_images_less(tmp_path: Path) -> None:
    """A generator that returns one image per prompt is maximally un-diverse; the real set's value sits beside it."""
    images, _ = make_phantom_images(6, 1, 48, seed=0)
    synthetic_paths, synthetic_prompts, real_paths, real_prompts = [], [], [], []
    for p in range(3):
        for k in range(4):
            synthetic_paths.append(write_png(tmp_path / "synthetic" / f"{p}_{k}.png", images[p]))
            synthetic_prompts.append(f"prompt {p}")
    for i, image in enumerate(images):
        real_paths.append(write_png(tmp_path / "real" / f"{i}.png", image))
        real_prompts.append(f"prompt {i % 2}")
    row = diversity_metrics(synthetic_paths, synthetic_prompts, real_paths, real_prompts, size=48, n_pairs=20,
                            device="cpu")
    assert row["msssim_same_prompt"] == pytest.approx(1.0, abs=1e-5)
    assert (row["msssim_same_prompt_pairs"], row["msssim_same_prompt_prompts"]) == (18, 3)
    assert row["msssim_same_prompt_real"] < 0.99 and row["msssim_same_prompt_real_pairs"] == 6
    assert row["msssim_random_real"] < 0.99 and row["msssim_random_real_pairs"] == 15
    assert row["msssim_random_pairs"] == 20
    assert row["msssim_random_ci_low"] <= row["msssim_random"] <= row["msssim_random_ci_high"]
    assert (row["msssim_size"], row["msssim_scales"]) == (48, 3) and "resized to 48px" in row["msssim_note"]
    assert row["msssim_method"].startswith("torchmetrics multiscale_structural_similarity_index_measure")
    assert "below pytorch_msssim" in row["msssim_method"]
