"""Every fidelity interval has its coverage: seeded simulations of the methods in benchmark.fidelity.

Features are Gaussian (real N(0, I), synthetic shifted and rescaled, so the population Fréchet distance is known in
closed form), optionally with patients / prompt rows of 3 correlated images (intra-cluster correlation 0.5). Each
test draws a few hundred data sets, applies the harness's own function and asserts the coverage within a band wide
enough for the Monte Carlo error of its replicate count (300 replicates at 0.95: standard error 0.013). Targets that
have no closed form (E[FID_N], the mean KID, PRDC given one side) are the mean over the replicates. The comments
give the measured values.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.core.stats import clustered_proportion_ci
from benchmark.fidelity.distances import fid, fid_jackknife, jackknife_groups
from benchmark.fidelity.kid import kid, kid_interval
from benchmark.fidelity.prdc import coverage_interval, density_interval, prdc

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPS = 300


def _shift_and_scales(dims: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    return np.full(dims, shift / np.sqrt(dims)), np.linspace(0.8, 1.2, dims)


def _population_fd(dims: int, shift: float) -> float:
    """FD between N(0, I) and N(mu, diag(s^2)): |mu|^2 + sum (1 - s)^2."""
    mu, s = _shift_and_scales(dims, shift)
    return float(mu @ mu + np.sum((1 - s) ** 2))


def _draw(rng: np.random.Generator, n: int, dims: int, shift: float = 0.0, per_cluster: int = 1,
          icc: float = 0.0, synthetic: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(n, dims)`` and cluster ids ``(n,)``: clusters of ``per_cluster`` images sharing a random effect
    (correlation ``icc``); marginally N(0, I), or N(mu, diag(s^2)) when ``synthetic``."""
    n_clusters = n // per_cluster
    effect = np.repeat(rng.normal(size=(n_clusters, dims)), per_cluster, axis=0)
    x = effect * np.sqrt(icc) + rng.normal(size=(n, dims)) * np.sqrt(1 - icc)
    if synthetic:
        mu, s = _shift_and_scales(dims, shift)
        x = x * s + mu
    return x, np.repeat(np.arange(n_clusters), per_cluster)


def _fid_replicates(dims: int, n_real: int, n_fake: int, seed: int, per_cluster: int = 1, icc: float = 0.0,
                    by_cluster: bool = True, shift: float = 0.2) -> np.ndarray:
    """(REPS, 6): FID, its interval, FD∞, its interval."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(REPS):
        a, pa = _draw(rng, n_real, dims, per_cluster=per_cluster, icc=icc)
        b, pb = _draw(rng, n_fake, dims, shift, per_cluster, icc, synthetic=True)
        r = fid_jackknife(a, b, real_clusters=pa if by_cluster else None, fake_clusters=pb if by_cluster else None,
                          device="cpu")
        out.append((r.fid, r.ci_low, r.ci_high, r.fd_inf, r.fd_inf_ci_low, r.fd_inf_ci_high))
    return np.array(out)


def _covers(low: np.ndarray, high: np.ndarray, target: float) -> float:
    return float(np.mean((low <= target) & (target <= high)))


# ------------------------------------------------------------------------------------------------- FID and FD∞


@pytest.mark.parametrize(("dims", "n_real", "n_fake", "per_cluster", "icc"), [
    (16, 100, 100, 1, 0.0),  # measured 0.983 (E[FID_N] 1.95, population FD 0.28: the FID interval covers FD 0.000)
    (64, 50, 40, 1, 0.0),    # fewer images than dims (cross-product path): measured 0.993
    (16, 120, 120, 3, 0.5),  # patients of 3 correlated images, grouped by patient: measured 0.987
])
def test_the_fid_interval_covers_the_expected_fid_at_its_sample_sizes(dims, n_real, n_fake, per_cluster, icc) -> None:
    runs = _fid_replicates(dims, n_real, n_fake, seed=dims + n_fake, per_cluster=per_cluster, icc=icc)
    expected = runs[:, 0].mean()
    assert 0.92 <= _covers(runs[:, 1], runs[:, 2], expected) <= 1.0
    assert _covers(runs[:, 1], runs[:, 2], _population_fd(dims, 0.2)) < 0.05  # not the population value: FD∞'s


@pytest.mark.parametrize(("dims", "n_real", "n_fake", "per_cluster", "icc"), [
    (16, 150, 150, 1, 0.0),  # measured 0.990; mean FD∞ 0.287 vs FD 0.282 (mean FID 1.41)
    (32, 150, 100, 1, 0.0),  # unequal sizes, N >= 3.1 D: measured 0.990; mean FD∞ 0.411 vs 0.494 (FID 5.43)
    (16, 120, 120, 3, 0.5),  # patients of 3: measured 0.997; mean FD∞ 0.340 vs 0.282 (FID 2.47)
])
def test_fd_inf_covers_the_population_distance_and_is_nearly_unbiased(dims, n_real, n_fake, per_cluster,
                                                                       icc) -> None:
    runs = _fid_replicates(dims, n_real, n_fake, seed=dims + n_fake + 1, per_cluster=per_cluster, icc=icc)
    true = _population_fd(dims, 0.2)
    assert 0.92 <= _covers(runs[:, 4], runs[:, 5], true) <= 1.0
    fid_bias = runs[:, 0].mean() - true
    assert abs(runs[:, 3].mean() - true) < 0.1 * fid_bias  # measured at most 0.027 x FID's bias


def test_fd_inf_needs_whole_patients_in_its_groups() -> None:
    # The same clustered data with every image its own group: FD∞ read 1.12 for a true 0.28 and covered it in 0.23
    # of the replicates (grouped by patient: 0.34 and 0.997, above). The witness of why groups are patients.
    runs = _fid_replicates(16, 120, 120, seed=136, per_cluster=3, icc=0.5, by_cluster=False)
    true = _population_fd(16, 0.2)
    assert runs[:, 3].mean() > 3 * true
    assert _covers(runs[:, 4], runs[:, 5], true) < 0.5


def test_a_percentile_bootstrap_of_fid_lies_above_its_own_estimate() -> None:
    # The method this module replaced, as the defect's witness: resampling with replacement duplicates images and
    # lifts FID, so with both sets from one distribution (true FD 0) the 95% percentile interval contained the FID
    # it was built around in 0.000 of 200 replicates (E[FID_N] and the true 0 also in 0.000).
    rng = np.random.default_rng(7)
    contains_estimate = 0
    for _ in range(200):
        a, _ = _draw(rng, 100, 16)
        b, _ = _draw(rng, 100, 16)
        value = fid(a, b, device="cpu")
        boot = [fid(a[rng.integers(0, 100, 100)], b[rng.integers(0, 100, 100)], device="cpu") for _ in range(30)]
        low, high = np.percentile(boot, [2.5, 97.5])
        contains_estimate += low <= value <= high
    assert contains_estimate / 200 < 0.1


# ------------------------------------------------------------------------------------------------------------ KID


@pytest.mark.parametrize(("dims", "n", "subset", "per_cluster", "icc"), [
    (16, 100, 50, 1, 0.0),   # measured 0.983 (conservative: the jackknife SE is 1.2x the replicates' SD)
    (16, 120, 50, 3, 0.5),   # patients of 3: measured 0.983 (SE 1.4x the SD)
])
def test_the_kid_interval_covers_the_mean_kid(dims, n, subset, per_cluster, icc) -> None:
    rng = np.random.default_rng(dims + n)
    runs = []
    for r in range(REPS):
        a, pa = _draw(rng, n, dims, per_cluster=per_cluster, icc=icc)
        b, pb = _draw(rng, n, dims, 0.3, per_cluster, icc, synthetic=True)
        result = kid(a, b, subset, 10, seed=r, device="cpu", groups=jackknife_groups(n, n, pa, pb, 20, seed=r))
        runs.append((result.mean, *kid_interval(result)))
    runs = np.array(runs)
    assert 0.92 <= _covers(runs[:, 1], runs[:, 2], runs[:, 0].mean()) <= 1.0


# ----------------------------------------------------------------------------------------------------------- PRDC


def test_precision_and_density_intervals_cover_their_mean_given_the_real_set() -> None:
    # 200 real images fixed; 100 prompt rows of 2 correlated synthetic images redrawn. Measured: precision 0.957
    # (mean 0.923), density 0.940 (mean 0.961); the density interval's lowest end was 0.72, never below 0.
    rng = np.random.default_rng(21)
    real, _ = _draw(rng, 200, 8)
    runs = []
    for r in range(REPS):
        fake, rows = _draw(rng, 200, 8, 0.5, per_cluster=2, icc=0.5, synthetic=True)
        p = prdc(real, fake, 5, device="cpu")
        runs.append((p.precision, *clustered_proportion_ci(p.fake_counts > 0, rows)[1:],
                     p.density, *density_interval(p.fake_counts / 5, rows, seed=r)))
    runs = np.array(runs)
    assert 0.92 <= _covers(runs[:, 1], runs[:, 2], runs[:, 0].mean()) <= 1.0
    assert 0.92 <= _covers(runs[:, 4], runs[:, 5], runs[:, 3].mean()) <= 1.0
    assert (runs[:, 4] >= 0).all()


def test_recall_and_coverage_intervals_cover_their_mean_given_the_synthetic_set() -> None:
    # 200 synthetic images fixed; 100 patients of 2 correlated real images redrawn. Measured: recall 0.927 (mean
    # 0.943); coverage 0.980 (mean 0.948), where a Wilson interval over patients alone covered 0.907 (0.86-0.91
    # in other settings): real balls depend on each other through their radii, which the jackknife design
    # effect counts.
    rng = np.random.default_rng(3)
    fake, _ = _draw(rng, 200, 8, 0.5, synthetic=True)
    runs = []
    for r in range(REPS):
        real, patients = _draw(rng, 200, 8, per_cluster=2, icc=0.5)
        groups, _ = jackknife_groups(200, 200, patients, None, 20, seed=r)
        p = prdc(real, fake, 5, real_groups=groups, device="cpu")
        runs.append((p.recall, *clustered_proportion_ci(p.real_recalled, patients)[1:], p.coverage,
                     *coverage_interval(p, patients), *clustered_proportion_ci(p.real_covered, patients)[1:]))
    runs = np.array(runs)
    assert 0.92 <= _covers(runs[:, 1], runs[:, 2], runs[:, 0].mean()) <= 1.0
    assert 0.92 <= _covers(runs[:, 4], runs[:, 5], runs[:, 3].mean()) <= 1.0
    assert _covers(runs[:, 6], runs[:, 7], runs[:, 3].mean()) < 0.93  # the patients-only interval falls short
