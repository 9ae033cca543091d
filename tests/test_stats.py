"""Specification of benchmark.core.stats: metrics, bootstrap CIs, DeLong tests, seed summaries and Holm adjustment."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

from benchmark.core.stats import (
    METRICS,
    SIGNAL_ALPHA,
    at_prevalence,
    auroc_above_chance_p,
    auroc_ci,
    binary_metrics,
    bootstrap_indices,
    bootstrap_metrics,
    cluster_bootstrap_weights,
    delong_auc_variance,
    delong_ci,
    delong_roc_test,
    detectable_difference,
    holm_adjust,
    mean_ci_over_seeds,
    metrics_at_thresholds,
    metrics_on_resamples,
    metrics_on_weights,
    paired_bootstrap_difference,
    percentile_interval,
    sensitivity_at_specificity,
    unpaired_difference,
    youden_threshold,
)

# Fixed arrays with tied scores and both kinds of errors.
Y_FIXED = np.array([1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1, 0])
S_FIXED = np.array([0.9, 0.1, 0.6, 0.4, 0.4, 0.7, 0.8, 0.2, 0.5, 0.5, 0.3, 0.6, 0.55, 0.05, 0.35, 0.5])


def _sample(n_pos: int, n_neg: int, separation: float, seed: int, decimals: int | None = None):
    """Labels (positives first) and normal scores: N(separation, 1) for positives, N(0, 1) for negatives."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos, dtype=int), np.zeros(n_neg, dtype=int)]
    s = rng.normal(size=y.size) + separation * y
    return y, (np.round(s, decimals) if decimals is not None else s)


def _sklearn_metrics(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, float]:
    """The reference: scikit-learn metric by metric (NaN for undefined)."""
    pred = (s >= threshold).astype(int)
    both = 0 < y.sum() < y.size
    return {
        "auroc": roc_auc_score(y, s) if both else math.nan,
        "accuracy": accuracy_score(y, pred),
        "precision": precision_score(y, pred, zero_division=np.nan),
        "recall": recall_score(y, pred, zero_division=np.nan),
        "specificity": recall_score(y, pred, pos_label=0, zero_division=np.nan),
        "f1": f1_score(y, pred, zero_division=np.nan),
    }


# ----------------------------------------------------------------------------------------------------
# binary_metrics
# ----------------------------------------------------------------------------------------------------


def test_binary_metrics_equal_sklearn_on_fixed_arrays():
    got = binary_metrics(Y_FIXED, S_FIXED, 0.5)
    pred = (S_FIXED >= 0.5).astype(int)
    tn, fp, fn, tp = confusion_matrix(Y_FIXED, pred).ravel()
    assert (got["n"], got["positives"], got["negatives"]) == (16, 7, 9)
    assert got["auroc"] == pytest.approx(roc_auc_score(Y_FIXED, S_FIXED), abs=1e-15)
    assert got["accuracy"] == pytest.approx(accuracy_score(Y_FIXED, pred), abs=1e-15)
    assert got["precision"] == pytest.approx(precision_score(Y_FIXED, pred), abs=1e-15)
    assert got["recall"] == pytest.approx(recall_score(Y_FIXED, pred), abs=1e-15)
    assert got["f1"] == pytest.approx(f1_score(Y_FIXED, pred), abs=1e-15)
    # specificity is the recall of the negative class, tn / (tn + fp)
    assert got["specificity"] == pytest.approx(recall_score(Y_FIXED, pred, pos_label=0), abs=1e-15)
    assert got["specificity"] == pytest.approx(tn / (tn + fp), abs=1e-15)
    # hand-checked values: tp=5 fp=4 fn=2 tn=5 (score 0.5 counts as positive)
    assert (tp, fp, fn, tn) == (5, 4, 2, 5)
    assert (got["precision"], got["recall"], got["specificity"]) == pytest.approx((5 / 9, 5 / 7, 5 / 9))


def test_binary_metrics_undefined_metrics_are_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nothing_predicted = binary_metrics(Y_FIXED, S_FIXED, 2.0)
        one_class = binary_metrics(np.zeros(6), np.linspace(0, 1, 6), 0.5)
    assert math.isnan(nothing_predicted["precision"])
    assert nothing_predicted["recall"] == 0.0 and nothing_predicted["f1"] == 0.0
    assert nothing_predicted["specificity"] == 1.0
    assert math.isnan(one_class["auroc"]) and math.isnan(one_class["recall"])
    assert one_class["precision"] == 0.0 and one_class["specificity"] == 0.5


def test_binary_metrics_rejects_nan_and_non_binary_labels():
    with pytest.raises(ValueError, match="NaN label"):
        binary_metrics(np.array([1.0, np.nan, 0.0]), np.array([0.2, 0.3, 0.4]), 0.5)
    with pytest.raises(ValueError, match="only 0 and 1"):
        binary_metrics(np.array([1, 2, 0]), np.array([0.2, 0.3, 0.4]), 0.5)
    with pytest.raises(ValueError, match="3 entries"):
        binary_metrics(np.array([1, 0, 0]), np.array([0.2, 0.3]), 0.5)
    with pytest.raises(ValueError, match="non-finite"):
        binary_metrics(np.array([1, 0, 0]), np.array([0.2, np.nan, 0.1]), 0.5)


# ----------------------------------------------------------------------------------------------------
# Bootstrap
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stratified", [True, False])
def test_vectorised_resample_auroc_equals_sklearn_on_each_resample(stratified):
    y, s = _sample(3, 7, 0.8, seed=3, decimals=1)  # small n: tied scores, and free resamples can lose a class
    idx = bootstrap_indices(y, 300, seed=11, stratified=stratified)
    got = metrics_on_resamples(y, s, 0.3, idx, metrics=("auroc",))["auroc"]
    want = np.array([roc_auc_score(y[row], s[row]) if 0 < y[row].sum() < y.size else np.nan for row in idx])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10, equal_nan=True)
    assert np.isnan(got).any() != stratified  # only free resamples lose a class (and give NaN)
    y, s = _sample(45, 105, 1.0, seed=4)  # a realistic size
    idx = bootstrap_indices(y, 300, seed=12, stratified=stratified)
    want = np.array([roc_auc_score(y[row], s[row]) for row in idx])
    np.testing.assert_allclose(metrics_on_resamples(y, s, 0.3, idx)["auroc"], want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("stratified", [True, False])
def test_vectorised_resample_threshold_metrics_equal_sklearn_on_each_resample(stratified):
    y, s = _sample(4, 8, 0.8, seed=3, decimals=1)  # small n: empty predicted / true classes happen
    for threshold in (0.3, 1.2):
        idx = bootstrap_indices(y, 40, seed=13, stratified=stratified)
        got = metrics_on_resamples(y, s, threshold, idx)
        want = [_sklearn_metrics(y[row], s[row], threshold) for row in idx]
        for m in METRICS:
            np.testing.assert_allclose(got[m], [w[m] for w in want], rtol=0, atol=1e-10, equal_nan=True, err_msg=m)
        if threshold == 1.2:
            assert np.isnan(got["precision"]).any()  # the undefined path was exercised


def test_bootstrap_indices_stratified_keeps_class_counts():
    y = np.r_[np.ones(7, dtype=int), np.zeros(23, dtype=int)]
    strat = bootstrap_indices(y, 1000, seed=0, stratified=True)
    free = bootstrap_indices(y, 1000, seed=0, stratified=False)
    assert strat.shape == free.shape == (1000, 30)
    assert (y[strat].sum(axis=1) == 7).all()
    assert np.unique(y[free].sum(axis=1)).size > 5


def test_bootstrap_metrics_is_percentile_interval_of_the_vectorised_resamples():
    y, s = _sample(30, 70, 1.0, seed=5)
    got = bootstrap_metrics(y, s, 0.5, n_resamples=1000, seed=9, confidence=0.9)
    resampled = metrics_on_resamples(y, s, 0.5, bootstrap_indices(y, 1000, seed=9))
    point = binary_metrics(y, s, 0.5)
    for m in METRICS:
        want = (point[m], *np.quantile(resampled[m], [0.05, 0.95]))
        assert got[m] == pytest.approx(want, abs=1e-15), m
        assert got[m][1] <= got[m][0] <= got[m][2]


def test_bootstrap_metrics_reproducible_by_seed():
    y, s = _sample(20, 40, 1.0, seed=1)
    assert bootstrap_metrics(y, s, 0.5, seed=4) == bootstrap_metrics(y, s, 0.5, seed=4)
    assert bootstrap_metrics(y, s, 0.5, seed=4)["auroc"] != bootstrap_metrics(y, s, 0.5, seed=5)["auroc"]


def test_bootstrap_ci_covers_true_auroc_at_nominal_rate():
    # Positives N(d, 1), negatives N(0, 1): true AUROC = Phi(d / sqrt(2)).
    d = 1.0
    true_auc = sps.norm.cdf(d / math.sqrt(2))
    covered = []
    for k in range(200):
        y, s = _sample(45, 105, d, seed=1000 + k)  # n = 150, prevalence 0.3
        _, low, high = bootstrap_metrics(y, s, 0.5, n_resamples=1000, seed=k)["auroc"]
        covered.append(low <= true_auc <= high)
    assert 0.90 <= np.mean(covered) <= 0.99


# ----------------------------------------------------------------------------------------------------
# DeLong
# ----------------------------------------------------------------------------------------------------


def _heaviside(x: float, z: float) -> float:
    return 1.0 if x > z else 0.5 if x == z else 0.0


def _reference_delong(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988), O(m n): AUCs and covariance S = S10 / m + S01 / n from placement values."""
    k = len(scores)
    xs = [s[y == 1] for s in scores]
    zs = [s[y == 0] for s in scores]
    m, n = xs[0].size, zs[0].size
    v10 = np.array([[sum(_heaviside(x[i], z[j]) for j in range(n)) / n for i in range(m)]
                    for x, z in zip(xs, zs, strict=True)])
    v01 = np.array([[sum(_heaviside(x[i], z[j]) for i in range(m)) / m for j in range(n)]
                    for x, z in zip(xs, zs, strict=True)])
    aucs = v10.mean(axis=1)
    s10 = np.array([[np.sum((v10[r] - aucs[r]) * (v10[q] - aucs[q])) / (m - 1) for q in range(k)] for r in range(k)])
    s01 = np.array([[np.sum((v01[r] - aucs[r]) * (v01[q] - aucs[q])) / (n - 1) for q in range(k)] for r in range(k)])
    return aucs, s10 / m + s01 / n


@pytest.mark.parametrize("decimals", [None, 1], ids=["continuous", "tied"])
def test_delong_paired_test_matches_reference(decimals):
    y, a = _sample(40, 60, 1.0, seed=21, decimals=decimals)
    b = np.round(0.6 * a + np.random.default_rng(22).normal(size=y.size), decimals or 12)
    aucs, cov = _reference_delong(y, [a, b])
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (aucs[0] - aucs[1]) / math.sqrt(var)
    p = 2 * sps.norm.sf(abs(z))
    got = delong_roc_test(y, a, b)
    assert 1e-4 < p < 0.5  # a non-trivial case
    assert (got["auc_a"], got["auc_b"]) == pytest.approx(tuple(aucs), abs=1e-12)
    assert got["difference"] == pytest.approx(aucs[0] - aucs[1], abs=1e-12)
    assert got["variance"] == pytest.approx(var, rel=1e-10)
    assert got["z"] == pytest.approx(z, rel=1e-10)
    assert got["p_value"] == pytest.approx(p, rel=1e-10)


@pytest.mark.parametrize("decimals", [None, 1], ids=["continuous", "tied"])
def test_delong_auc_variance_and_ci_match_reference(decimals):
    y, s = _sample(25, 35, 0.7, seed=8, decimals=decimals)
    aucs, cov = _reference_delong(y, [s])
    assert delong_auc_variance(y, s) == pytest.approx(cov[0, 0], rel=1e-10)
    half = sps.norm.ppf(0.95) * math.sqrt(cov[0, 0])
    assert delong_ci(y, s, confidence=0.9) == pytest.approx((aucs[0], aucs[0] - half, aucs[0] + half), abs=1e-12)


def test_delong_ci_is_clipped_to_unit_interval_and_identical_scores_give_p_one():
    y, s = _sample(10, 10, 4.0, seed=2)  # near-perfect separation
    auc, low, high = delong_ci(y, s)
    assert auc > 0.95 and 0.0 <= low <= auc and high == 1.0
    same = delong_roc_test(y, s, s.copy())
    assert (same["difference"], same["z"], same["p_value"]) == (0.0, 0.0, 1.0)
    one_each = delong_ci(np.array([1, 0, 0]), np.array([0.9, 0.1, 0.2]))  # variance needs 2 rows per class
    assert one_each[0] == 1.0 and math.isnan(one_each[1]) and math.isnan(one_each[2])


# ----------------------------------------------------------------------------------------------------
# Differences
# ----------------------------------------------------------------------------------------------------


def test_unpaired_difference_same_distribution_is_not_significant():
    y_a, s_a = _sample(60, 140, 1.0, seed=31)
    y_b, s_b = _sample(60, 140, 1.0, seed=32)
    got = unpaired_difference(y_a, s_a, y_b, s_b, 0.5, n_resamples=2000, seed=0)
    assert set(got) == {*METRICS, "auroc_delong_p"}
    for key, (diff, low, high, p) in got.items():
        assert low <= 0.0 <= high, key
        assert p > 0.2, key
        assert diff == pytest.approx(binary_metrics(y_a, s_a, 0.5)[key.split("_")[0]]
                                     - binary_metrics(y_b, s_b, 0.5)[key.split("_")[0]], abs=1e-15)


def test_unpaired_difference_clearly_different_is_significant():
    y_a, s_a = _sample(60, 140, 2.0, seed=41)  # true AUROC 0.92
    y_b, s_b = _sample(60, 140, 0.3, seed=42)  # true AUROC 0.58
    got = unpaired_difference(y_a, s_a, y_b, s_b, 0.5, n_resamples=2000, seed=0)
    for key in ("auroc", "auroc_delong_p", "recall", "f1"):
        diff, low, high, p = got[key]
        assert 0.0 < low <= diff <= high and p < 0.01, key
    # the DeLong interval uses var_a + var_b of two independent AUCs
    diff, low, high, p = got["auroc_delong_p"]
    se = math.sqrt(delong_auc_variance(y_a, s_a) + delong_auc_variance(y_b, s_b))
    assert high - low == pytest.approx(2 * sps.norm.ppf(0.975) * se, rel=1e-12)
    assert p == pytest.approx(2 * sps.norm.sf(diff / se), rel=1e-10)


def test_unpaired_auroc_p_values_are_calibrated_under_the_null():
    rejected_boot, rejected_delong = [], []
    for k in range(100):
        rng = np.random.default_rng(5000 + k)
        y_a, y_b = (rng.random(120) < 0.3).astype(int), (rng.random(120) < 0.3).astype(int)
        s_a, s_b = rng.normal(size=120) + y_a, rng.normal(size=120) + y_b
        got = unpaired_difference(y_a, s_a, y_b, s_b, 0.5, n_resamples=1000, seed=k)
        rejected_boot.append(got["auroc"][3] < 0.05)
        rejected_delong.append(got["auroc_delong_p"][3] < 0.05)
    assert 0.0 < np.mean(rejected_boot) <= 0.12
    assert 0.0 < np.mean(rejected_delong) <= 0.12


def test_paired_bootstrap_identical_scores_give_zero_difference():
    y, s = _sample(30, 70, 1.0, seed=51)
    for metric in METRICS:
        assert paired_bootstrap_difference(y, s, s.copy(), metric) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_clearly_better_model_is_significant():
    y, better = _sample(50, 150, 2.0, seed=61)
    worse = better + np.random.default_rng(62).normal(scale=2.0, size=y.size)
    diff, low, high, p = paired_bootstrap_difference(y, better, worse, "auroc", n_resamples=2000, seed=3)
    assert diff == pytest.approx(roc_auc_score(y, better) - roc_auc_score(y, worse), abs=1e-15)
    assert 0.0 < low <= diff <= high
    assert p < 0.01
    # the paired bootstrap and the paired DeLong test agree on the order of magnitude of the evidence
    assert delong_roc_test(y, better, worse)["p_value"] < 0.01


# ----------------------------------------------------------------------------------------------------
# Seeds and multiplicity
# ----------------------------------------------------------------------------------------------------


def test_mean_ci_over_seeds_equals_student_t_interval():
    values = [0.81, 0.84, 0.79, 0.86, 0.83]
    got = mean_ci_over_seeds(values, confidence=0.95)
    mean, sem = np.mean(values), sps.sem(values)
    low, high = sps.t.interval(0.95, df=4, loc=mean, scale=sem)
    assert got["n"] == 5
    assert got["mean"] == pytest.approx(0.826, abs=1e-15)
    assert got["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-15)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((low, high), abs=1e-12)


def test_mean_ci_over_one_seed_has_no_spread():
    got = mean_ci_over_seeds([0.8])
    assert got["mean"] == 0.8 and got["n"] == 1
    assert math.isnan(got["std"]) and math.isnan(got["ci_low"]) and math.isnan(got["ci_high"])


def test_holm_adjust_known_example_keeps_nan():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    got = holm_adjust([0.01, 0.04, 0.03, np.nan, 0.005])
    np.testing.assert_allclose(got, [0.03, 0.06, 0.06, np.nan, 0.02], rtol=0, atol=1e-15, equal_nan=True)
    np.testing.assert_allclose(holm_adjust([0.5, 0.4]), [0.8, 0.8])
    np.testing.assert_allclose(holm_adjust([0.9, 0.6]), [1.0, 1.0])


# ----------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------


def test_fewer_than_1000_resamples_is_an_error():
    y, s = _sample(10, 10, 1.0, seed=0)
    with pytest.raises(ValueError, match="n_resamples must be an integer >= 1000"):
        bootstrap_metrics(y, s, 0.5, n_resamples=999)
    with pytest.raises(ValueError, match=">= 1000"):
        unpaired_difference(y, s, y, s, 0.5, n_resamples=500)
    with pytest.raises(ValueError, match=">= 1000"):
        paired_bootstrap_difference(y, s, s, "auroc", n_resamples=100)


def test_nan_labels_are_an_error_everywhere():
    y = np.array([1.0, 0.0, np.nan, 1.0, 0.0, 0.0])
    s = np.linspace(0, 1, 6)
    calls = [
        lambda: bootstrap_metrics(y, s, 0.5),
        lambda: unpaired_difference(y, s, y, s, 0.5),
        lambda: paired_bootstrap_difference(y, s, s, "f1"),
        lambda: delong_roc_test(y, s, s),
        lambda: delong_auc_variance(y, s),
        lambda: delong_ci(y, s),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="mask unknown labels"):
            call()


def test_unknown_metric_name_is_an_error():
    y, s = _sample(10, 10, 1.0, seed=0)
    with pytest.raises(ValueError, match=r"unknown metric 'auc'.*auroc, accuracy"):
        paired_bootstrap_difference(y, s, s, "auc")
    with pytest.raises(ValueError, match="unknown metric 'ppv'"):
        metrics_on_resamples(y, s, 0.5, bootstrap_indices(y, 10), metrics=("ppv",))


# ------------------------------------------------------------------------------------------ label signal (AUROC > 0.5)


def test_auroc_above_chance_p_is_the_one_sided_brunner_munzel_test_of_the_auroc():
    rng = np.random.default_rng(3)
    y = (rng.random(90) < 0.3).astype(int)
    informative = rng.normal(size=90) + 0.8 * y
    p = auroc_above_chance_p(y, informative)
    expected = sps.brunnermunzel(informative[y == 1], informative[y == 0], alternative="greater")
    assert p == pytest.approx(expected.pvalue) and p < 1e-3
    assert auroc_above_chance_p(y, -informative) > 0.999  # a reversed classifier is not "above chance"
    assert np.isnan(auroc_above_chance_p(np.zeros(5), np.arange(5.0)))  # AUROC undefined without positives


def test_complete_separation_falls_back_to_the_exact_mann_whitney_p_value():
    y = np.r_[np.ones(4, dtype=int), np.zeros(6, dtype=int)]
    s = np.r_[np.full(4, 0.9), np.full(6, 0.1)]  # Brunner-Munzel's variance is 0 here
    assert auroc_above_chance_p(y, s) == pytest.approx(sps.mannwhitneyu(s[:4], s[4:], alternative="greater").pvalue)


def test_holm_rule_keeps_false_label_signal_at_alpha_where_any_ci_above_half_does_not():
    # 2000 label-blind "generators", 4 classes each, scores independent of the labels (the null is true). "Some
    # class's 95% CI lies above 0.5" (one-sided p < 0.025 per class, no correction) fires 1 - 0.975^4 = 9.6% of the
    # time; Holm over the 4 classes keeps the family-wise rate at most alpha = 5%.
    rng = np.random.default_rng(0)
    uncorrected = holm = 0
    for _ in range(2000):
        y = (rng.random((120, 4)) < 0.25).astype(int)
        p = [auroc_above_chance_p(y[:, j], rng.normal(size=120)) for j in range(4)]
        uncorrected += min(p) < 0.025
        holm += bool((holm_adjust(p) < SIGNAL_ALPHA).any())
    assert 0.075 < uncorrected / 2000 < 0.12
    assert holm / 2000 < 0.06


# ------------------------------------------------------------------------------------------ patients (clusters)


def test_weighted_resample_metrics_equal_sklearn_on_the_rows_repeated_by_their_weights():
    rng = np.random.default_rng(21)
    weights = rng.integers(0, 3, size=(5, Y_FIXED.size)).astype(float)
    weights[:, :2] = 1  # keep both classes in every resample
    got = metrics_on_weights(Y_FIXED, S_FIXED, 0.5, weights)
    for b, w in enumerate(weights.astype(int)):
        repeated = np.repeat(np.arange(Y_FIXED.size), w)
        want = _sklearn_metrics(Y_FIXED[repeated], S_FIXED[repeated], 0.5)
        for metric in METRICS:
            assert got[metric][b] == pytest.approx(want[metric], abs=1e-12, nan_ok=True), metric


def test_the_patient_bootstrap_draws_whole_patients_and_keeps_patients_with_positives_apart():
    y = np.array([1, 0, 0, 0, 0, 1, 0, 0])
    patients = np.array(["a", "a", "b", "b", "c", "d", "d", "e"])
    weights = np.concatenate(list(cluster_bootstrap_weights(y, patients, 300, seed=2)))
    assert weights.shape == (300, 8)
    for row in weights:  # a patient's images share one count
        assert row[0] == row[1] and row[2] == row[3] and row[5] == row[6]
        assert row[0] + row[5] == 2  # two patients hold a positive (a, d): two draws among them
        assert row[2] + row[4] + row[7] == 3  # three hold none: three draws among them


def test_with_one_image_per_patient_the_clustered_auroc_variance_is_delong_up_to_the_small_sample_factor():
    y, s = _sample(40, 60, 1.0, seed=22)
    plain = delong_auc_variance(y, s)
    clustered = delong_auc_variance(y, s, clusters=np.arange(y.size))
    # Obuchowski's K/(K-1) sum / m^2 against DeLong's sum / ((m-1) m): equal to within 1/m
    assert clustered == pytest.approx(plain, rel=0.03)


def test_sensitivity_at_specificity_is_the_roc_curve_step_at_that_false_positive_rate():
    from sklearn.metrics import roc_curve

    y, s = _sample(30, 70, 1.0, seed=23, decimals=1)
    fpr, tpr, _ = roc_curve(y, s)
    for target in (0.8, 0.9, 0.95, 1.0):
        assert sensitivity_at_specificity(y, s, target) == pytest.approx(tpr[fpr <= 1 - target + 1e-12].max())


def test_precision_and_accuracy_at_another_prevalence_follow_from_sensitivity_and_specificity():
    got = at_prevalence((0.8, 0.7, 0.9), (0.9, 0.85, 0.95), 0.002)
    assert got["precision"][0] == pytest.approx(0.8 * 0.002 / (0.8 * 0.002 + 0.1 * 0.998))
    assert got["precision"][1] < got["precision"][0] < got["precision"][2]
    assert got["accuracy"] == pytest.approx((0.8 * 0.002 + 0.9 * 0.998, 0.7 * 0.002 + 0.85 * 0.998,
                                             0.9 * 0.002 + 0.95 * 0.998))


def test_an_auroc_of_exactly_one_gets_an_interval_below_one_that_narrows_with_more_positives():
    y = np.r_[np.ones(15), np.zeros(100)]
    s = np.r_[np.linspace(2, 3, 15), np.linspace(0, 1, 100)]
    auc, low, high = auroc_ci(y, s)
    assert (auc, high) == (1.0, 1.0) and 0.8 < low < 0.97
    y2 = np.r_[np.ones(60), np.zeros(100)]
    s2 = np.r_[np.linspace(2, 3, 60), np.linspace(0, 1, 100)]
    assert auroc_ci(y2, s2)[1] > low


def test_detectable_difference_is_two_point_eight_standard_errors_at_the_defaults():
    assert detectable_difference(0.05) == pytest.approx(0.05 * (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)))
    assert math.isnan(detectable_difference(float("nan")))


def test_youden_threshold_is_sklearns_best_roc_point_and_is_re_chosen_on_each_resample():
    from sklearn.metrics import roc_curve

    y, s = _sample(30, 70, 1.0, seed=24, decimals=2)
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    best = thresholds[np.flatnonzero((tpr - fpr) == (tpr - fpr).max())].max()
    assert youden_threshold(y, s) == pytest.approx(best)
    weights = np.concatenate(list(cluster_bootstrap_weights(y, np.arange(y.size), 50, seed=1)))
    chosen = youden_threshold(y, s, weights)
    for b in (0, 7, 31):
        rows = np.repeat(np.arange(y.size), weights[b].astype(int))
        assert chosen[b] == pytest.approx(youden_threshold(y[rows], s[rows]))
    at = metrics_at_thresholds(y, s, chosen, weights, ("recall", "specificity"))
    rows = np.repeat(np.arange(y.size), weights[7].astype(int))
    assert at["recall"][7] == pytest.approx(binary_metrics(y[rows], s[rows], chosen[7])["recall"])


def test_percentile_interval_leaves_out_undefined_replicates_and_is_nan_when_all_are() -> None:
    values = np.array([np.nan, 0.0, 1.0, 2.0, 3.0, 4.0, np.nan])
    low, high = percentile_interval(values, 0.5)
    assert (low, high) == pytest.approx(tuple(np.quantile([0.0, 1.0, 2.0, 3.0, 4.0], [0.25, 0.75])))
    assert all(math.isnan(v) for v in percentile_interval(np.full(5, np.nan), 0.95))
