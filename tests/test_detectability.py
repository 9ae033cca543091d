"""Detectability (classifier two-sample test): the held-out AUROC of a linear probe telling synthetic from real
features, its interval's coverage and its test's level, shown by seeded simulations (a few hundred replicates).

Coverage tolerances: with R replicates a 95% interval's observed coverage has a standard error of about
sqrt(0.95 * 0.05 / R); the assertions allow three of them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from benchmark.fidelity.detectability import detectability
from benchmark.report.tables import detectability_line


def _true_auroc(found, shift: np.ndarray) -> float:
    """Exact AUROC of the fitted linear probe when real ~ N(0, I) and synthetic ~ N(shift, I)."""
    w = found.probe[-1].coef_[0] / found.probe[0].scale_
    return float(stats.norm.cdf(w @ shift / (math.sqrt(2) * np.linalg.norm(w))))


def test_identical_distributions_read_about_one_half_and_the_interval_covers_it_at_its_nominal_level() -> None:
    rng = np.random.default_rng(0)
    replicates, covered, rejected, estimates = 300, 0, 0, []
    for rep in range(replicates):
        found = detectability(rng.normal(size=(40, 8)), rng.normal(size=(40, 8)), seed=rep)
        covered += found.ci_low <= 0.5 <= found.ci_high
        rejected += found.p_value < 0.05
        estimates.append(found.auroc)
    # measured: coverage 0.96, rejection 0.023, mean 0.495 (averaging 5 folds' AUROCs as if independent gave
    # 0.84 and 0.13 in the same setting with 60 images a side)
    assert covered / replicates >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / replicates)
    assert rejected / replicates <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / replicates)
    assert abs(np.mean(estimates) - 0.5) < 0.02


def test_the_interval_covers_the_fitted_probes_true_auroc_when_the_sets_differ() -> None:
    rng = np.random.default_rng(1)
    shift = np.array([1.0, 0.0])  # Bayes AUROC Phi(1 / sqrt 2) = 0.76
    replicates, covered, truths = 200, 0, []
    for rep in range(replicates):
        found = detectability(rng.normal(size=(80, 2)), rng.normal(size=(80, 2)) + shift, seed=rep)
        truth = _true_auroc(found, shift)
        covered += found.ci_low <= truth <= found.ci_high
        truths.append(truth)
    assert covered / replicates >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / replicates)  # measured 0.96
    assert np.mean(truths) == pytest.approx(stats.norm.cdf(1 / math.sqrt(2)), abs=0.02)


def _patients(rng: np.random.Generator, tag: str, n_patients: int = 15, per_patient: int = 6) -> tuple:
    centres = 1.5 * rng.normal(size=(n_patients, 4))
    features = np.repeat(centres, per_patient, axis=0) + 0.3 * rng.normal(size=(n_patients * per_patient, 4))
    return features, np.repeat([f"{tag}{i}" for i in range(n_patients)], per_patient)


def test_several_images_per_patient_keep_the_level_because_patients_never_straddle_the_split() -> None:
    rng = np.random.default_rng(2)
    replicates, covered, rejected_grouped, rejected_ungrouped = 200, 0, 0, 0
    for rep in range(replicates):
        (real, real_ids), (fake, fake_ids) = _patients(rng, "r"), _patients(rng, "f")
        grouped = detectability(real, fake, real_groups=real_ids, fake_groups=fake_ids, seed=rep)
        covered += grouped.ci_low <= 0.5 <= grouped.ci_high
        rejected_grouped += grouped.p_value < 0.05
        rejected_ungrouped += detectability(real, fake, seed=rep).p_value < 0.05
    assert covered / replicates >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / replicates)
    assert rejected_grouped / replicates <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / replicates)
    # the same data split image by image: the probe recognises patients it was trained on, and "detects" a
    # difference that is not there (measured: grouped coverage 0.97 and rejection 0.03; ungrouped rejection 0.70)
    assert rejected_ungrouped / replicates > 0.5


def test_a_synthetic_image_made_from_a_patients_prompt_stays_on_that_patients_side() -> None:
    rng = np.random.default_rng(3)
    real, real_ids = _patients(rng, "p", n_patients=10, per_patient=2)
    fake = real + 0.01 * rng.normal(size=real.shape)  # near-copies of their source patients' images
    found = detectability(real, fake, real_groups=real_ids, fake_groups=real_ids, seed=0)
    assert found.n_groups == 10
    assert found.n_test_real == found.n_test_synthetic  # whole patients held out: their real and synthetic images
    assert found.n_test_real + found.n_test_synthetic == 20


def test_separable_sets_read_near_one_with_a_tiny_p_value_and_the_report_line_says_so() -> None:
    rng = np.random.default_rng(4)
    found = detectability(rng.normal(size=(100, 16)), rng.normal(size=(100, 16)) + 2.0, seed=0)
    assert found.auroc > 0.99 and found.ci_low > 0.9 and found.p_value < 1e-6
    assert (found.n_test_real, found.n_test_synthetic) == (50, 50)
    line = detectability_line(found.auroc, found.ci_low, found.ci_high)
    assert line.startswith(f"a linear probe tells synthetic from real with AUROC {found.auroc:.2f} [")
    assert "detectably different" in line


def test_too_few_images_give_nan_figures_with_a_note_and_bad_shapes_an_error() -> None:
    rng = np.random.default_rng(5)
    found = detectability(rng.normal(size=(1, 4)), rng.normal(size=(5, 4)))
    assert math.isnan(found.auroc) and "too few" in found.note
    assert detectability_line(found.auroc, found.ci_low, found.ci_high) == ""
    with pytest.raises(ValueError, match="same D"):
        detectability(rng.normal(size=(10, 4)), rng.normal(size=(10, 3)))


def _matched_sets(rng: np.random.Generator, per_class: int = 10, n_classes: int = 4) -> tuple:
    """Real and synthetic sets with exactly the same label composition (synthetic images made from the real set's
    prompts) whose features are the label (scaled one-hot) plus noise, drawn alike on both sides."""
    labels = np.repeat(np.arange(n_classes), per_class)

    def side() -> np.ndarray:
        return 3.0 * np.eye(n_classes)[labels] + rng.normal(size=(len(labels), n_classes))

    return side(), side(), labels.astype(str)


def test_sets_with_the_same_label_composition_keep_the_level_when_the_split_is_stratified_by_label() -> None:
    rng = np.random.default_rng(6)
    replicates, covered, plain = 200, 0, []
    for rep in range(replicates):
        real, fake, strata = _matched_sets(rng)
        found = detectability(real, fake, real_strata=strata, fake_strata=strata, seed=rep)
        covered += found.ci_low <= 0.5 <= found.ci_high
        plain.append(detectability(real, fake, seed=rep).auroc)
    assert covered / replicates >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / replicates)  # measured 0.965 (mean 0.504)
    # split at random, the halves' label shares mirror each other and the probe learns them backwards
    # (measured: mean AUROC 0.442, coverage of 0.5 down to 0.91)
    assert np.mean(plain) < 0.47
