"""Fidelity metrics (benchmark.fidelity) against straightforward reference formulas on small data.

References are written out in full here: scipy's ``sqrtm`` for FID, full distance matrices for nearest neighbours
and PRDC (Naeem et al. 2020's formulas), explicit kernel sums for KID, and the jackknife replicates recomputed from
the kept rows. Coverage of the intervals is simulated in tests/test_fidelity_calibration.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
from scipy.spatial.distance import cdist

from benchmark.core.stats import clustered_proportion_ci
from benchmark.fidelity.distances import (
    balanced_groups,
    chunked_knn,
    feature_statistics,
    fid,
    fid_jackknife,
    frechet_distance,
    jackknife_groups,
    knn_radii,
    subsample_indices,
    wilson_interval,
)
from benchmark.fidelity.kid import kid, kid_interval, kid_subsets, polynomial_mmd2
from benchmark.fidelity.metrics import fidelity_metrics
from benchmark.fidelity.prdc import coverage_interval, density_interval, prdc

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


def test_fid_with_a_constant_feature_equals_the_scipy_reference() -> None:
    """A feature that never varies (a dead ReLU unit) makes a covariance singular: no Cholesky, eigh instead."""
    real, fake = features(200, 12, seed=30), features(180, 12, seed=31, shift=0.2)
    real[:, 3] = 0.0
    fake[:, 3] = 0.5  # adds 0.5^2 to the mean term and nothing to the covariance terms
    others = np.r_[0:3, 4:12]
    assert fid(real, fake, device="cpu") == pytest.approx(scipy_fid(real[:, others], fake[:, others]) + 0.25,
                                                          rel=1e-6)


def test_balanced_groups_keep_each_patient_in_one_group_and_sizes_even() -> None:
    patients = np.repeat(np.arange(60), np.random.default_rng(0).integers(1, 5, size=60))  # 1-4 images each
    groups = balanced_groups(patients, 10, seed=3)
    for patient in range(60):
        assert len(set(groups[patients == patient].tolist())) == 1, patient
    sizes = np.bincount(groups, minlength=10)
    assert sizes.max() - sizes.min() <= 4  # at most the largest patient's image count apart
    np.testing.assert_array_equal(groups, balanced_groups(patients, 10, seed=3))
    with pytest.raises(ValueError, match="cannot form 61 groups from 60 clusters"):
        balanced_groups(patients, 61)


def test_jackknife_groups_are_capped_at_the_clusters_of_the_smaller_side_and_need_five() -> None:
    ga, gb = jackknife_groups(40, 50, np.arange(40) // 4, None, n_groups=20, seed=0)  # 10 patients
    assert ga.max() == gb.max() == 9
    assert jackknife_groups(40, 50, np.arange(40) // 10, None, n_groups=20, seed=0) is None  # 4 patients


@pytest.mark.parametrize(("n_real", "n_fake", "dims"), [(120, 100, 6), (30, 25, 40)])
def test_fid_jackknife_replicates_are_the_fid_without_each_group(n_real: int, n_fake: int, dims: int) -> None:
    """Covariance downdates (N >= D) and fresh FIDs (N < D) give the FID of the kept rows."""
    real, fake = features(n_real, dims, seed=32), features(n_fake, dims, seed=33, shift=0.3)
    patients = np.arange(n_real) // 2
    ga, gb = jackknife_groups(n_real, n_fake, patients, None, n_groups=8, seed=1)
    result = fid_jackknife(real, fake, groups=(ga, gb), device="cpu")
    expected = [scipy_fid(real[ga != g], fake[gb != g]) for g in range(8)]
    np.testing.assert_allclose(result.leave_out, expected, rtol=1e-6)
    se = np.sqrt(7 / 8 * np.sum((result.leave_out - result.leave_out.mean()) ** 2))
    half = scipy.stats.t.ppf(0.975, 7) * se
    assert result.se == pytest.approx(se, rel=1e-12)
    assert (result.ci_low, result.ci_high) == pytest.approx((max(0.0, result.fid - half), result.fid + half))
    if min(n_real, n_fake) >= 1.5 * dims:
        assert result.fd_inf == pytest.approx(8 * result.fid - 7 * result.leave_out.mean(), rel=1e-12)


def test_fid_without_five_patients_has_no_interval_and_says_why() -> None:
    real, fake = features(40, 4, seed=34), features(40, 4, seed=35)
    result = fid_jackknife(real, fake, real_clusters=np.arange(40) // 10, device="cpu")
    assert result.fid == pytest.approx(scipy_fid(real, fake), rel=1e-6)
    assert np.isnan([result.ci_low, result.ci_high, result.fd_inf]).all() and result.groups == 0
    assert "4 clusters on the smaller side" in result.notes[0]


def test_fd_inf_is_nan_with_a_note_below_one_and_a_half_images_per_dimension() -> None:
    real, fake = features(50, 40, seed=36), features(50, 40, seed=37)
    result = fid_jackknife(real, fake, device="cpu")
    assert np.isfinite([result.fid, result.ci_low, result.ci_high]).all()
    assert np.isnan([result.fd_inf, result.fd_inf_ci_low, result.fd_inf_ci_high]).all()
    assert "fewer than 1.5 x the 40 feature dims" in result.notes[0]


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


def test_kid_without_each_group_is_the_mean_mmd_of_the_subsets_less_that_group() -> None:
    real, fake = features(90, 6, seed=38), features(70, 6, seed=39, shift=0.3)
    ga, gb = jackknife_groups(90, 70, np.arange(90) // 3, None, n_groups=6, seed=2)
    result = kid(real, fake, subset_size=30, n_subsets=4, seed=5, device="cpu", groups=(ga, gb))
    subsets = kid_subsets(90, 70, 30, 4, seed=5)
    real_t, fake_t = torch.as_tensor(real), torch.as_tensor(fake)
    for g in range(6):
        expected = np.mean([polynomial_mmd2(real_t[i[ga[i] != g]], fake_t[j[gb[j] != g]]) for i, j in subsets])
        assert result.leave_out[g] == pytest.approx(expected, rel=1e-9), g
    half = scipy.stats.t.ppf(0.975, 5) * np.sqrt(5 / 6 * np.sum((result.leave_out - result.leave_out.mean()) ** 2))
    assert kid_interval(result) == pytest.approx((result.mean - half, result.mean + half), rel=1e-12)


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


@pytest.mark.parametrize("dims", [8, 128])
def test_density_of_exact_copies_is_exactly_one_in_float32_in_any_order(dims: int) -> None:
    """Each real ball strictly holds its own copy and k - 1 others; the copy of its k-th neighbour sits on the
    boundary. Before the fix, float32 round-off put that copy inside for some balls: density 1.0093 (8 dims) and
    1.0067 (128 dims) on these data."""
    real = (features(300, dims, seed=40) * 3 + 5).astype(np.float32)
    order = np.random.default_rng(41).permutation(300)
    for copies in (real.copy(), real[order]):
        result = prdc(real, copies, 5, device="cpu", query_chunk=37, ref_chunk=53)
        assert result.density == 1.0 and (result.precision, result.recall, result.coverage) == (1.0, 1.0, 1.0)
        assert result.fake_counts.sum() == 5 * 300


def test_density_interval_is_a_cluster_bootstrap_that_never_goes_below_zero() -> None:
    counts = np.r_[np.zeros(95), np.full(5, 3.0)] / 5  # density 0.03: a normal interval would reach below 0
    low, high = density_interval(counts, np.arange(100) // 2, n_resamples=2000, seed=0)
    assert 0.0 <= low < counts.mean() < high
    assert density_interval(np.zeros(50), None, seed=0) == (0.0, 0.0)


def test_subsample_indices_draw_n_distinct_items_reproducibly() -> None:
    picked = subsample_indices(100, 30, seed=4)
    assert len(set(picked.tolist())) == 30 and picked.max() < 100
    np.testing.assert_array_equal(picked, subsample_indices(100, 30, seed=4))
    np.testing.assert_array_equal(subsample_indices(10, 30, seed=4), np.arange(10))


def test_fidelity_metrics_report_sample_sizes_and_intervals_around_each_figure() -> None:
    real, fake = features(150, 8, seed=16), features(120, 8, seed=17, shift=0.6)
    row = fidelity_metrics(real, fake, k=5, kid_subset_size=50, kid_n_subsets=10, n_groups=10, device="cpu")
    assert (row["n_real"], row["n_synthetic"], row["kid_subset_size"], row["jackknife_groups"]) == (150, 120, 50, 10)
    assert row["fid"] == pytest.approx(scipy_fid(real.astype(np.float32).astype(np.float64),
                                                 fake.astype(np.float32).astype(np.float64)), rel=1e-5)
    for name in ("fid", "precision", "recall", "density", "coverage"):
        assert row[f"{name}_ci_low"] <= row[name] <= row[f"{name}_ci_high"], name
    assert row["kid_ci_low"] <= row["kid_mean"] <= row["kid_ci_high"]
    assert row["fd_inf_ci_low"] <= row["fd_inf"] <= row["fd_inf_ci_high"]
    assert row["kid_subset_p025"] <= row["kid_mean"] <= row["kid_subset_p975"]  # the subsets' spread, kept
    assert "jackknife over 10 groups" in row["ci_method"] and row["notes"] == ""
    assert wilson_interval(round(row["precision"] * 120), 120) == pytest.approx(
        (row["precision_ci_low"], row["precision_ci_high"]), abs=1e-12)


def test_fidelity_intervals_resample_patients_and_synthetic_clusters() -> None:
    """Three near-identical images per patient and per prompt row: the intervals count patients and rows."""
    rng = np.random.default_rng(42)
    real = np.repeat(features(60, 8, seed=43), 3, axis=0) + rng.normal(0, 0.01, (180, 8))
    fake = np.repeat(features(50, 8, seed=44, shift=0.4), 3, axis=0) + rng.normal(0, 0.01, (150, 8))
    patients, prompt_rows = np.arange(180) // 3, np.arange(150) // 3
    row = fidelity_metrics(real, fake, real_clusters=patients, fake_clusters=prompt_rows, real_cluster_kind="patient",
                           fake_cluster_kind="prompt row", kid_subset_size=40, kid_n_subsets=5, device="cpu")
    p = prdc(real.astype(np.float32), fake.astype(np.float32), 5, device="cpu")
    assert (row["n_real_clusters"], row["n_synthetic_clusters"], row["jackknife_groups"]) == (60, 50, 20)
    assert (row["recall"], row["recall_ci_low"], row["recall_ci_high"]) == pytest.approx(
        clustered_proportion_ci(p.real_recalled, patients))
    assert (row["precision"], row["precision_ci_low"], row["precision_ci_high"]) == pytest.approx(
        clustered_proportion_ci(p.fake_counts > 0, prompt_rows))
    by_image = clustered_proportion_ci(p.real_covered, None)
    assert row["coverage_ci_high"] - row["coverage_ci_low"] > 1.3 * (by_image[2] - by_image[1])
    assert "real: patient, synthetic: prompt row" in row["ci_method"]


def test_coverage_without_each_group_equals_prdc_on_the_kept_real_images() -> None:
    real, fake = features(150, 6, seed=45), features(120, 6, seed=46, shift=0.4)
    patients = np.arange(150) // 3
    ga, _ = jackknife_groups(150, 120, patients, None, n_groups=10, seed=4)
    result = prdc(real, fake, 5, real_groups=ga, device="cpu", dtype=torch.float64)
    expected = [prdc(real[ga != g], fake, 5, device="cpu", dtype=torch.float64).coverage for g in range(10)]
    np.testing.assert_allclose(result.coverage_leave_out, expected, atol=1e-12)
    low, high = coverage_interval(result, patients)
    plain = clustered_proportion_ci(result.real_covered, patients)
    assert low <= plain[1] and plain[2] <= high and low <= result.coverage <= high  # never narrower
