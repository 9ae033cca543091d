"""Fidelity metrics (benchmark.fidelity) against straightforward reference formulas on small data.

References are written out in full here: scipy's ``sqrtm`` for FID, full distance matrices for nearest neighbours
and PRDC (Naeem et al. 2020's formulas), explicit kernel sums for KID.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.distance import cdist

from benchmark.fidelity import (
    chunked_knn,
    feature_statistics,
    fid,
    fid_bootstrap,
    fidelity_metrics,
    frechet_distance,
    kid,
    kid_subsets,
    knn_radii,
    prdc,
    subsample_indices,
    wilson_interval,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def scipy_fid(x: np.ndarray, y: np.ndarray) -> float:
    mu1, mu2 = x.mean(axis=0), y.mean(axis=0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def features(n: int, dims: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(dims, dims)) / np.sqrt(dims)
    return (rng.normal(size=(n, dims)) @ mixing * scale + shift).astype(np.float64)


@pytest.mark.parametrize(("n_real", "n_fake", "dims"), [(400, 300, 16), (40, 30, 64)])
def test_fid_equals_the_scipy_sqrtm_reference(n_real: int, n_fake: int, dims: int) -> None:
    """More samples than dims (covariance path) and fewer (cross-product singular-value path)."""
    real = features(n_real, dims, seed=0)
    fake = features(n_fake, dims, seed=1, shift=0.3, scale=1.2)
    assert fid(real, fake, device="cpu") == pytest.approx(scipy_fid(real, fake), rel=1e-6)


def test_frechet_distance_of_statistics_equals_the_scipy_reference() -> None:
    real, fake = features(200, 12, seed=2), features(150, 12, seed=3, shift=-0.5)
    mu1, s1 = feature_statistics(real)
    mu2, s2 = feature_statistics(fake)
    assert frechet_distance(mu1, s1, mu2, s2, device="cpu") == pytest.approx(scipy_fid(real, fake), rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero() -> None:
    real = features(100, 8, seed=4)
    assert abs(fid(real, real, device="cpu")) < 1e-9


def test_fid_bootstrap_resamples_both_sets_and_centres_near_the_estimate() -> None:
    real, fake = features(300, 8, seed=5), features(300, 8, seed=6, shift=1.0)
    boot = fid_bootstrap(real, fake, n_bootstrap=50, seed=0, device="cpu")
    assert boot.shape == (50,) and len(np.unique(boot)) == 50
    low, high = np.percentile(boot, [2.5, 97.5])
    assert low < fid(real, fake, device="cpu") < high
    np.testing.assert_array_equal(boot, fid_bootstrap(real, fake, n_bootstrap=50, seed=0, device="cpu"))


def test_kid_subsets_are_drawn_without_replacement_and_independently() -> None:
    subsets = kid_subsets(50, 40, subset_size=30, n_subsets=20, seed=0)
    assert len(subsets) == 20
    for real_idx, fake_idx in subsets:
        assert len(set(real_idx)) == 30 and len(set(fake_idx)) == 30
        assert real_idx.max() < 50 and fake_idx.max() < 40
    assert len({tuple(sorted(r)) for r, _ in subsets}) == 20



def test_kid_subsets_never_take_the_whole_smaller_set() -> None:
    # Subsets of all 10 synthetic images would all be the same 10: half of the smaller set instead.
    assert [len(i) for i in kid_subsets(50, 10, subset_size=30, n_subsets=1, seed=0)[0]] == [5, 5]
    assert [len(i) for i in kid_subsets(40, 40, subset_size=1000, n_subsets=1, seed=0)[0]] == [20, 20]
    assert [len(i) for i in kid_subsets(40, 40, subset_size=39, n_subsets=1, seed=0)[0]] == [39, 39]


def test_kid_of_two_equal_sets_smaller_than_the_subset_size_has_a_spread() -> None:
    # 40 real and 40 synthetic images against the default subset size of 1000 (a per-class row, say): the KID
    # interval is an interval, not a point.
    real, fake = features(40, 8, seed=1), features(40, 8, seed=2, shift=0.4)
    result = kid(real, fake, n_subsets=50, seed=0, device="cpu")
    low, high = np.percentile(result.values, [2.5, 97.5])
    assert result.subset_size == 20 and result.std > 0 and low < result.mean < high


def test_kid_equals_the_unbiased_polynomial_mmd_formula() -> None:
    real, fake = features(60, 8, seed=7), features(50, 8, seed=8, shift=0.4)

    def kernel(a: np.ndarray, b: np.ndarray) -> float:
        return (a @ b / a.size + 1.0) ** 3

    def reference_mmd2(x: np.ndarray, y: np.ndarray) -> float:
        m = len(x)
        xx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        yy = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
        return xx + yy - 2 * xy

    result = kid(real, fake, subset_size=20, n_subsets=5, seed=3, device="cpu")
    expected = [reference_mmd2(real[i], fake[j]) for i, j in kid_subsets(60, 50, 20, 5, seed=3)]
    np.testing.assert_allclose(result.values, expected, rtol=1e-9)
    assert result.mean == pytest.approx(np.mean(expected), rel=1e-9)
    assert result.std == pytest.approx(np.std(expected), rel=1e-9)
    assert result.subset_size == 20


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_chunked_nearest_neighbours_equal_brute_force(metric: str) -> None:
    rng = np.random.default_rng(9)
    query, ref = rng.normal(size=(230, 24)), rng.normal(size=(310, 24))
    values, index = chunked_knn(query, ref, 4, metric=metric, device="cpu", dtype=torch.float64,
                                query_chunk=64, ref_chunk=50)
    if metric == "euclidean":
        full = cdist(query, ref)
        order = np.argsort(full, axis=1)[:, :4]
    else:
        full = 1.0 - cdist(query, ref, metric="cosine")
        order = np.argsort(-full, axis=1)[:, :4]
    np.testing.assert_array_equal(index, order)
    np.testing.assert_allclose(values, np.take_along_axis(full, order, axis=1), rtol=1e-10, atol=1e-12)


def test_chunked_nearest_neighbours_in_float32_agree_with_brute_force() -> None:
    rng = np.random.default_rng(10)
    query, ref = rng.normal(size=(200, 64)) + 50.0, rng.normal(size=(300, 64)) + 50.0  # far from the origin
    values, index = chunked_knn(query.astype(np.float32), ref.astype(np.float32), 1, device="cpu",
                                query_chunk=32, ref_chunk=70)
    full = cdist(query, ref)
    np.testing.assert_array_equal(index[:, 0], full.argmin(axis=1))
    np.testing.assert_allclose(values[:, 0], full.min(axis=1), rtol=1e-4)


def test_chunked_nearest_neighbours_skip_pairs_of_the_same_group() -> None:
    rng = np.random.default_rng(11)
    points = rng.normal(size=(40, 5))
    patients = np.repeat(np.arange(20), 2)
    values, index = chunked_knn(points, points, 1, query_groups=patients, ref_groups=patients, device="cpu",
                                dtype=torch.float64, query_chunk=7, ref_chunk=9)
    full = cdist(points, points)
    full[patients[:, None] == patients[None, :]] = np.inf
    np.testing.assert_array_equal(index[:, 0], full.argmin(axis=1))
    np.testing.assert_allclose(values[:, 0], full.min(axis=1))
    lonely, lonely_index = chunked_knn(points[:2], points[:2], 1, query_groups=[0, 0], ref_groups=[0, 0],
                                       device="cpu")
    assert np.isinf(lonely).all() and (lonely_index == -1).all()


def test_knn_radii_are_the_kth_neighbour_distance_excluding_self() -> None:
    points = np.random.default_rng(12).normal(size=(50, 6))
    full = np.sort(cdist(points, points), axis=1)
    np.testing.assert_allclose(knn_radii(points, 5, device="cpu", dtype=torch.float64, ref_chunk=13), full[:, 5])


def test_prdc_equals_the_reference_formulas_on_full_distance_matrices() -> None:
    k = 5
    real, fake = features(120, 10, seed=13), features(90, 10, seed=14, shift=0.5, scale=0.8)
    real_radii = np.sort(cdist(real, real), axis=1)[:, k]
    fake_radii = np.sort(cdist(fake, fake), axis=1)[:, k]
    d = cdist(real, fake)  # (real, fake)
    precision = (d < real_radii[:, None]).any(axis=0).mean()
    recall = (d < fake_radii[None, :]).any(axis=1).mean()
    density = (d < real_radii[:, None]).sum(axis=0).mean() / k
    coverage = (d.min(axis=1) < real_radii).mean()
    result = prdc(real, fake, k, device="cpu", dtype=torch.float64, query_chunk=17, ref_chunk=23)
    assert (result.precision, result.recall, result.density, result.coverage) == pytest.approx(
        (precision, recall, density, coverage), abs=1e-12)
    assert 0 < result.precision < 1 and 0 < result.recall < 1 and 0 < result.coverage < 1


def test_prdc_of_a_set_against_itself() -> None:
    real = features(80, 6, seed=15)
    result = prdc(real, real, 5, device="cpu", dtype=torch.float64)
    assert (result.precision, result.recall, result.coverage) == (1.0, 1.0, 1.0)


def test_subsample_indices_draw_n_distinct_items_reproducibly() -> None:
    picked = subsample_indices(100, 30, seed=4)
    assert len(set(picked.tolist())) == 30 and picked.max() < 100
    np.testing.assert_array_equal(picked, subsample_indices(100, 30, seed=4))
    np.testing.assert_array_equal(subsample_indices(10, 30, seed=4), np.arange(10))


def test_fidelity_metrics_report_sample_sizes_and_intervals_around_each_figure() -> None:
    real, fake = features(150, 8, seed=16), features(120, 8, seed=17, shift=0.6)
    row = fidelity_metrics(real, fake, k=5, kid_subset_size=50, kid_n_subsets=10, n_bootstrap=20, device="cpu")
    assert (row["n_real"], row["n_synthetic"], row["kid_subset_size"], row["fid_bootstrap"]) == (150, 120, 50, 20)
    assert row["fid"] == pytest.approx(scipy_fid(real.astype(np.float32).astype(np.float64),
                                                 fake.astype(np.float32).astype(np.float64)), rel=1e-5)
    for name in ("fid", "precision", "recall", "density", "coverage"):
        assert row[f"{name}_ci_low"] <= row[name] <= row[f"{name}_ci_high"], name
    assert row["kid_ci_low"] <= row["kid_mean"] <= row["kid_ci_high"]
    assert wilson_interval(row["precision"] * 120, 120) == (row["precision_ci_low"], row["precision_ci_high"])
