"""Detectability: how well a simple classifier tells synthetic images from real ones in a feature space, as the
held-out AUROC of a classifier two-sample test (Lopez-Paz & Oquab 2017) with its interval and test of AUROC > 0.5.

0.5 means a linear probe on these features cannot tell the two sets apart; 1.0 means it always can. Unlike FID it
has a fixed scale, does not grow with the feature dimension and needs no Gaussian assumption.

* **Probe**: ``StandardScaler`` + L2 logistic regression (scikit-learn, ``C`` = :data:`DEFAULT_C`).
* **Split**: one held-out split by :class:`sklearn.model_selection.StratifiedGroupKFold` (the first of
  ``round(1 / test_fraction)`` folds is the test set, half by default): no group (a real patient, together with the
  synthetic images generated from that patient's prompts where the synthetic set names its source patient) has
  images on both sides, and both sides hold about the same share of synthetic images, in each stratum (the label
  vector) where strata are given. The probe is fitted on the training part only.
* **Estimate and interval**: the probe's AUROC on the held-out part with Newcombe's score interval widened by the
  patients' design effect (:func:`benchmark.core.stats.auroc_ci`). Given the fitted probe, the held-out images are
  an independent sample, so the interval covers that probe's true AUROC. **Test**: the one-sided score test of
  AUROC = 0.5 on the same variance, so p < 0.025 exactly when the 95% interval lies above 0.5.
* Why not k-fold averaging: each fold's probe is trained on the other folds' test images, so the folds' AUROCs
  are positively correlated (under no difference, fold i's AUROC and fold j's both follow the same chance
  direction in the pooled data) and an interval that treats them as independent undercovers (simulated: 84% for a
  nominal 95%, a test at 5% rejecting 13% of the time). A single held-out split keeps the nominal level.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats as sps

from benchmark.core.stats import auroc_ci, design_effect, hanley_mcneil_variance

if TYPE_CHECKING:  # scikit-learn is imported where a probe is fitted, so the report can read rows without it
    from sklearn.pipeline import Pipeline

DEFAULT_TEST_FRACTION = 0.5
DEFAULT_C = 1.0
MAX_ITER = 2000


@dataclass
class Detectability:
    """A classifier two-sample test's result: ``auroc`` (held-out AUROC; 1 = synthetic always told apart, 0.5 =
    indistinguishable) with its interval and one-sided p-value of AUROC > 0.5; ``n_test_real`` /
    ``n_test_synthetic`` held-out images and ``n_groups`` groups overall; the fitted ``probe`` (a scikit-learn
    pipeline); ``note`` says why the figures are NaN when they are."""

    auroc: float
    ci_low: float
    ci_high: float
    p_value: float
    n_test_real: int
    n_test_synthetic: int
    n_groups: int
    probe: Pipeline | None = None
    note: str = ""

    def columns(self, prefix: str = "detect") -> dict[str, Any]:
        """Result-row columns: ``<prefix>_auroc`` with ``_ci_low`` / ``_ci_high``, ``_p``, ``_n_test_real``,
        ``_n_test_synthetic``, ``_groups``."""
        return {f"{prefix}_auroc": self.auroc, f"{prefix}_auroc_ci_low": self.ci_low,
                f"{prefix}_auroc_ci_high": self.ci_high, f"{prefix}_p": self.p_value,
                f"{prefix}_n_test_real": self.n_test_real, f"{prefix}_n_test_synthetic": self.n_test_synthetic,
                f"{prefix}_groups": self.n_groups}


def linear_probe(c: float = DEFAULT_C) -> Pipeline:
    """The probe: standardised features, then L2 logistic regression with inverse strength ``c``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=MAX_ITER))


def _nan(n_groups: int, note: str) -> Detectability:
    return Detectability(math.nan, math.nan, math.nan, math.nan, 0, 0, n_groups, note=note)


def detectability(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    real_groups: Sequence[Any] | np.ndarray | None = None,
    fake_groups: Sequence[Any] | np.ndarray | None = None,
    real_strata: Sequence[Any] | np.ndarray | None = None,
    fake_strata: Sequence[Any] | np.ndarray | None = None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    c: float = DEFAULT_C,
    seed: int = 0,
    confidence: float = 0.95,
) -> Detectability:
    """Held-out AUROC of a linear probe telling ``fake`` ``(M, D)`` from ``real`` ``(N, D)`` feature vectors.

    Args:
        real, fake: feature matrices with the same ``D`` (e.g. the stage's cached CXR features).
        real_groups, fake_groups: ``(N,)`` / ``(M,)`` group ids (None: each image its own). Ids are compared
            across the two sides, so a synthetic image made from a real patient's prompt can share that
            patient's id and stay on that patient's side of the split.
        real_strata, fake_strata: ``(N,)`` / ``(M,)`` optional strata (e.g. each image's label vector as a
            string; both or neither): each side's images of every stratum are split in the same proportion, so
            the held-out part keeps the composition the two sets have. Without them a composition the sets
            share by design (synthetic images generated from the reference's own prompts) is split at random,
            what the probe learns from one part is reversed in the other, and the AUROC reads below 0.5.
        test_fraction: share of the groups held out for testing (0 < f <= 0.5; the split is the first of
            ``round(1 / f)`` stratified group folds). c: the logistic regression's inverse L2 strength.
        seed: the split's shuffle. confidence: two-sided level of the interval.

    Returns:
        :class:`Detectability` (see the module docstring for the estimand, interval and test); NaN figures with a
        note when the split leaves a side without real or synthetic images.
    """
    if not 0 < test_fraction <= 0.5:
        raise ValueError(f"test_fraction {test_fraction}: use a share in (0, 0.5]")
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be (N, D) and (M, D) with the same D; got {real.shape} and {fake.shape}")
    n1, n2 = len(real), len(fake)
    groups = np.concatenate([
        np.asarray([f"r{i}" for i in range(n1)] if real_groups is None else real_groups, dtype=str),
        np.asarray([f"f{i}" for i in range(n2)] if fake_groups is None else fake_groups, dtype=str)])
    if len(groups) != n1 + n2:
        raise ValueError(f"groups: {len(groups)} ids for {n1 + n2} images")
    n_groups = int(np.unique(groups).size)
    k = max(2, round(1 / test_fraction))
    if n_groups < k or min(n1, n2) < k:
        return _nan(n_groups, f"no detectability: {n1} real and {n2} synthetic images in {n_groups} groups are too "
                              "few to hold some of each side out")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedGroupKFold

    x = np.concatenate([real, fake])
    y = np.concatenate([np.zeros(n1, dtype=np.int64), np.ones(n2, dtype=np.int64)])
    strata = y.astype(str)
    if (real_strata is None) != (fake_strata is None):
        raise ValueError("give strata for both sides or for neither")
    if real_strata is not None and fake_strata is not None:
        extra = np.concatenate([np.asarray(real_strata, dtype=str), np.asarray(fake_strata, dtype=str)])
        if len(extra) != n1 + n2:
            raise ValueError(f"strata: {len(extra)} values for {n1 + n2} images")
        strata = np.char.add(np.char.add(strata, "|"), extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # strata smaller than the number of folds: split as they come
        train, test = next(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(x, strata, groups))
    n_test_fake = int(y[test].sum())
    n_test_real = len(test) - n_test_fake
    if min(n_test_fake, n_test_real) == 0 or y[train].min() == y[train].max():
        return _nan(n_groups, "no detectability: the group split left one side without real or synthetic images "
                              "(too few groups on one side)")
    probe = linear_probe(c)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(x[train], y[train])
    scores = probe.decision_function(x[test])
    estimate, low, high = auroc_ci(y[test], scores, confidence, clusters=groups[test])
    deff = design_effect(y[test], scores, groups[test])
    se0 = math.sqrt(deff * hanley_mcneil_variance(0.5, n_test_fake, n_test_real))
    p_value = float(sps.norm.sf((estimate - 0.5) / se0))
    return Detectability(float(estimate), low, high, p_value, n_test_real, n_test_fake, n_groups, probe)


CI_METHOD = ("detectability: held-out AUROC of a linear probe (standardised features, L2 logistic regression) fitted "
             "on a patient-disjoint stratified half; Newcombe score interval times the patients' design effect "
             "(covers the fitted probe's AUROC); p: one-sided score test of AUROC = 0.5")

