"""The prompt-matched re-identification design (``benchmark.privacy.matched``): who each synthetic image is compared
with, and seeded simulations of its test's level and power and of its intervals' coverage.

The simulations draw same-patient probabilities directly (no images): calibration pairs of real different patients
carry a patient effect (so the threshold varies with the calibration patients drawn); a synthetic image has its own
effect shared by its matched and null pair, its source patient (cluster of 3 images) an effect of its own, and the
synthetic set scores higher than real pairs overall (synthetic images look alike), so the nominal false-match rate
is not the chance level. A generator that ignores patient identity draws the matched and the null pair alike.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from benchmark.core.stats import clustered_proportion_ci
from benchmark.privacy.matched import SOURCE_IMAGE, SOURCE_PATIENT, calibration_pairs, draw_references, label_strata
from benchmark.privacy.reid import (
    fmr_threshold,
    paired_cluster_test,
    paired_share_difference,
    share_above,
    threshold_bootstrap,
)

CAL_SD = math.sqrt(0.5**2 + 1.0)  # calibration logit: patient effect SD 0.5 + pair noise SD 1
SYN_SD = math.sqrt(0.7**2 + 0.5**2 + 1.0)  # synthetic logit: image 0.7 + source patient 0.5 + pair noise 1
SHIFT = 0.5  # synthetic images score 0.5 logits above real different-patient pairs


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _sample(rng: np.random.Generator, *, patients: int = 60, per_patient: int = 3, calibration_patients: int = 30,
            pairs: int = 1000, shift: float = SHIFT, leak: float = 0.0, copied: float = 0.0):
    """Calibration scores and their patients, matched and null scores of the synthetic images and their source
    patients. ``leak``: logits added to every matched pair; ``copied``: share of source patients copied outright."""
    effect = rng.normal(0, 0.5, calibration_patients)
    calibration_patient = rng.integers(0, calibration_patients, pairs)
    calibration = _sigmoid(effect[calibration_patient] + rng.normal(0, 1, pairs))
    source = np.repeat(np.arange(patients), per_patient)
    image = rng.normal(0, 0.7, source.size)
    matched = shift + image + rng.normal(0, 0.5, patients)[source] + rng.normal(0, 1, source.size) + leak
    null = shift + image + rng.normal(0, 0.5, patients)[source] + rng.normal(0, 1, source.size)
    copy = (rng.random(patients) < copied)[source]
    matched[copy] = 8.0
    return calibration, calibration_patient, _sigmoid(matched), _sigmoid(null), source


def _true_share(fmr: float, shift: float = SHIFT) -> float:
    """Share of synthetic pairs above the population threshold at ``fmr``."""
    return float(sps.norm.sf((CAL_SD * sps.norm.ppf(1 - fmr) - shift) / SYN_SD))


# ------------------------------------------------------------------------------------------ who is compared


def _toy() -> dict[str, np.ndarray]:
    """Six train patients: a (3 images), b (1), c (2), d (4), e (3), f (1); labels "1" or "0" per image."""
    patients = np.array(list("aaabccddddeeef"))
    strata = np.array(["1", "1", "0", "1", "1", "0", "1", "1", "0", "0", "1", "0", "0", "1"])
    return {"patients": patients, "strata": strata}


def test_an_image_with_a_source_row_is_compared_with_that_image_and_its_null_with_one_image_of_another_patient(
        ) -> None:
    toy = _toy()
    # synthetic images 0-2 made from train row 0 (patient a, labels "1"), image 3 from row 2 (a, "0")
    refs = draw_references(np.array([0, 0, 0, 2]), ["a"] * 4, toy["patients"], ["1", "1", "1", "0"], toy["strata"],
                           seed=0)
    assert refs["reference"].tolist() == [SOURCE_IMAGE] * 4
    assert [r.tolist() for r in refs["matched_refs"]] == [[0], [0], [0], [2]]
    nulls = [int(r[0]) for r in refs["null_refs"]]
    assert nulls[0] == nulls[1] == nulls[2]  # every image of one prompt row against the same null image
    assert all(toy["patients"][j] != "a" for j in nulls)
    assert toy["strata"][nulls[0]] == "1" and toy["strata"][nulls[3]] == "0"  # an image with the same labels
    assert (refs["null_match"] == "same labels").all()


def test_an_image_with_only_a_source_patient_is_compared_with_all_their_images_and_its_null_with_as_many() -> None:
    toy = _toy()
    refs = draw_references(np.array([-1, -1]), ["d", "a"], toy["patients"], ["0", "1"], toy["strata"], seed=1)
    assert refs["reference"].tolist() == [SOURCE_PATIENT] * 2
    assert refs["matched_refs"].iat[0].tolist() == [6, 7, 8, 9]  # patient d's four images
    # nobody else has four images: the null patient has fewer, and the row says so
    assert refs["null_match"].iat[0] == "fewer images" and refs["null_patient"].iat[0] != "d"
    # patient a has three images: d or e (three or more, one labelled "1"), three of their images
    null = refs["null_patient"].iat[1]
    assert null in ("d", "e") and refs["null_match"].iat[1] == "same labels"
    assert len(refs["null_refs"].iat[1]) == 3 and (toy["patients"][refs["null_refs"].iat[1]] == null).all()


def test_images_without_a_training_source_are_left_out_and_the_draw_is_seeded() -> None:
    toy = _toy()
    args = (np.array([-1, 5, -1]), ["", "c", "zz"], toy["patients"], ["1", "0", "1"], toy["strata"])
    refs = draw_references(*args, seed=4)
    assert refs.index.tolist() == [1]  # "" has no source; "zz" is not a training patient
    again = draw_references(*args, seed=4)
    assert again["null_refs"].iat[0].tolist() == refs["null_refs"].iat[0].tolist()


def test_label_strata_write_unknown_labels_as_empty() -> None:
    assert label_strata(np.array([[1.0, 0.0, np.nan], [0.0, 0.0, 1.0]])).tolist() == ["1,0,", "0,0,1"]
    assert label_strata(np.zeros((2, 0))).tolist() == ["", ""]


def test_calibration_pairs_hold_only_different_patients_and_every_query_image() -> None:
    query, ref = np.repeat(["v1", "v2", "v3"], 2), np.array(["t1", "t2", "v1"])  # v1 also among the references
    i, j = calibration_pairs(query, ref, n_pairs=60, seed=0)
    assert (query[i] != ref[j]).all() and set(i.tolist()) == set(range(6)) and len(i) == 60


def test_the_fmr_threshold_leaves_at_most_the_false_match_rate_above_it() -> None:
    scores = np.random.default_rng(0).random(1000)
    threshold = fmr_threshold(scores, 0.01)
    assert (scores > threshold).mean() <= 0.01 and (scores >= threshold).mean() > 0.01
    boot = fmr_threshold(scores, 0.01, np.ones((3, 1000)))
    np.testing.assert_allclose(boot, threshold, rtol=0, atol=1e-12)
    # on resampled (integer) weights: numpy's weighted inverted-CDF quantile, row by row
    weights = np.random.default_rng(1).poisson(1.0, (20, 1000)).astype(float)
    expected = [np.quantile(scores, 0.99, weights=w, method="inverted_cdf") for w in weights]
    np.testing.assert_allclose(fmr_threshold(scores, 0.01, weights), expected, rtol=0, atol=1e-12)


def test_the_sign_flip_test_is_exact_over_source_patients() -> None:
    # five source patients, each with more matched than null images above: 1 of 2**5 sign patterns is as extreme
    matched, null = np.r_[np.ones(10)], np.r_[np.zeros(10)]
    clusters = np.repeat(np.arange(5), 2)
    assert paired_cluster_test(matched, null, clusters) == pytest.approx(1 / 32)
    assert paired_cluster_test(null, matched, clusters) == pytest.approx(1.0)
    assert paired_cluster_test(matched, matched, clusters) == 1.0  # no patient differs


# ------------------------------------------------------------------------------------------- simulations


def test_the_matched_versus_null_test_keeps_its_level_when_the_generator_ignores_patient_identity() -> None:
    # 60 source patients x 3 images, FMR 0.05: the sign-flip test on above / below rejected 0.030 of 400
    # generators at 0.05, on the scores 0.043; the matched share against the nominal rate (a one-sided
    # binomial test of the count above the threshold at p = FMR, the "two figures side by side" reading)
    # rejected 0.995, because synthetic images do not score like real pairs
    rng = np.random.default_rng(31)
    share = score = naive = 0
    for replicate in range(400):
        calibration, _, matched, null, source = _sample(rng)
        threshold = fmr_threshold(calibration, 0.05)
        share += paired_cluster_test(matched > threshold, null > threshold, source, n_resamples=999,
                                     seed=replicate) < 0.05
        score += paired_cluster_test(matched, null, source, n_resamples=999, seed=replicate) < 0.05
        naive += sps.binomtest(int((matched > threshold).sum()), matched.size, 0.05, "greater").pvalue < 0.05
    assert share / 400 < 0.07
    assert score / 400 < 0.07
    assert naive / 400 > 0.5


def test_the_matched_versus_null_test_finds_a_generator_that_copies_one_source_patient_in_ten() -> None:
    # 10% of the 60 source patients copied (on average 6), FMR 0.01: the share test rejected 0.70 of 200
    # generators at 0.05 (the score test 0.39: the copies' large differences drown in the others' noise)
    rng = np.random.default_rng(32)
    share = score = 0
    for replicate in range(200):
        calibration, _, matched, null, source = _sample(rng, copied=0.1)
        threshold = fmr_threshold(calibration, 0.01)
        share += paired_cluster_test(matched > threshold, null > threshold, source, n_resamples=999,
                                     seed=replicate) < 0.05
        score += paired_cluster_test(matched, null, source, n_resamples=999, seed=replicate) < 0.05
    assert share / 200 > 0.5


@pytest.mark.parametrize(("fmr", "calibration_patients", "pairs", "low"), [
    (0.01, 30, 1000, 0.92),  # measured 0.960; Wilson at the calibrated threshold alone 0.855
    (0.05, 30, 1000, 0.92),  # measured 0.945; Wilson alone 0.855
    (0.05, 8, 200, 0.87),    # 8 calibration patients: measured 0.915 (Wilson alone 0.690)
])
def test_the_share_interval_covers_with_the_threshold_re_derived_on_resampled_calibration_patients(
        fmr: float, calibration_patients: int, pairs: int, low: float) -> None:
    rng = np.random.default_rng(33)
    true = _true_share(fmr)
    covered = wilson = 0
    for replicate in range(200):
        calibration, patients, matched, _, source = _sample(rng, calibration_patients=calibration_patients,
                                                            pairs=pairs)
        threshold = fmr_threshold(calibration, fmr)
        thresholds = threshold_bootstrap(calibration, patients, fmr, n_resamples=1000, seed=replicate)
        got = share_above(matched, threshold, thresholds, source, seed=replicate)
        covered += got["ci_low"] <= true <= got["ci_high"]
        _, w_low, w_high = clustered_proportion_ci(matched > threshold, source)
        wilson += w_low <= true <= w_high
    assert low < covered / 200 <= 1.0
    assert wilson / 200 < 0.91


def test_the_share_interval_covers_a_share_so_small_that_most_sets_show_none() -> None:
    # true share 0.0009 of 180 images: 0 above in 79% of the sets, where a percentile bootstrap is the point [0, 0]
    # (it alone covered 0.325); with its Wilson part the interval covered 1.000
    rng = np.random.default_rng(34)
    true = _true_share(0.01, shift=-1.5)
    covered = 0
    for replicate in range(200):
        calibration, patients, matched, _, source = _sample(rng, shift=-1.5)
        thresholds = threshold_bootstrap(calibration, patients, 0.01, n_resamples=1000, seed=replicate)
        got = share_above(matched, fmr_threshold(calibration, 0.01), thresholds, source, seed=replicate)
        covered += got["ci_low"] <= true <= got["ci_high"]
    assert covered / 200 > 0.93


def test_the_difference_interval_covers_a_partial_leak() -> None:
    # every matched pair 1 logit closer than its null (the source patient shows through): true difference of shares
    # at FMR 0.05 is 0.244; the paired interval covered 0.960 of 200 sets
    rng = np.random.default_rng(35)
    true = _true_share(0.05, shift=SHIFT + 1.0) - _true_share(0.05)
    covered = 0
    for replicate in range(200):
        calibration, patients, matched, null, source = _sample(rng, leak=1.0)
        thresholds = threshold_bootstrap(calibration, patients, 0.05, n_resamples=1000, seed=replicate)
        got = paired_share_difference(matched, null, fmr_threshold(calibration, 0.05), thresholds, source,
                                      seed=replicate)
        covered += got["ci_low"] <= true <= got["ci_high"]
    assert 0.92 < covered / 200 <= 1.0
