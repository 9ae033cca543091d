"""Statistics every stage uses: binary metrics and their (patient) bootstraps, AUROC intervals and tests that hold
with few positives, proportions and prevalence, seed-averaged figures, and Holm's adjustment.

Pure functions on arrays, no hidden state; every random draw comes from a ``numpy.random.Generator`` seeded by a
``seed`` argument. Modules: :mod:`.metrics` (point estimates, vectorised image / patient bootstraps, differences),
:mod:`.auroc` (DeLong / Obuchowski variance, Newcombe interval, MOVER difference, Brunner-Munzel test, detectable
difference), :mod:`.proportions` (Wilson, clustered Wilson, precision and accuracy at another prevalence),
:mod:`.seeds` (seed spread plus test-set sampling; Holm). Everything public is importable from here.
"""

from ._checks import METRICS, MIN_RESAMPLES
from .auroc import (
    auroc,
    auroc_above_chance_p,
    auroc_ci,
    auroc_difference_ci,
    class_mean_interval,
    cluster_codes,
    delong_auc_variance,
    delong_ci,
    delong_contrast,
    delong_roc_test,
    design_effect,
    detectable_difference,
    hanley_mcneil_variance,
)
from .metrics import (
    binary_metrics,
    bootstrap_indices,
    bootstrap_metrics,
    cluster_bootstrap_weights,
    confusion_counts,
    joint_chunk,
    metrics_at_thresholds,
    metrics_on_resamples,
    metrics_on_weights,
    paired_bootstrap_difference,
    percentile_interval,
    sensitivity_at_specificity,
    silverman_bandwidths,
    smoothed_youden_thresholds,
    unpaired_difference,
    youden_threshold,
)
from .proportions import at_prevalence, clustered_proportion_ci, proportion_design_effect, wilson_interval
from .seeds import (
    METHOD_COMBINED,
    METHOD_TEST_ONLY,
    MIN_SEEDS_FOR_SPREAD,
    holm_adjust,
    mean_ci_over_seeds,
    seed_mean_difference,
    seed_mean_interval,
)

# Family-wise error rate of "the classifier finds this class above chance", over the classes of one image source
# (Holm-adjusted one-sided Brunner-Munzel tests, :func:`auroc_above_chance_p`).
SIGNAL_ALPHA = 0.05

__all__ = [
    "METHOD_COMBINED",
    "METHOD_TEST_ONLY",
    "METRICS",
    "MIN_RESAMPLES",
    "MIN_SEEDS_FOR_SPREAD",
    "SIGNAL_ALPHA",
    "at_prevalence",
    "auroc",
    "auroc_above_chance_p",
    "auroc_ci",
    "auroc_difference_ci",
    "binary_metrics",
    "bootstrap_indices",
    "bootstrap_metrics",
    "class_mean_interval",
    "cluster_bootstrap_weights",
    "cluster_codes",
    "clustered_proportion_ci",
    "confusion_counts",
    "delong_auc_variance",
    "delong_ci",
    "delong_contrast",
    "delong_roc_test",
    "design_effect",
    "detectable_difference",
    "hanley_mcneil_variance",
    "holm_adjust",
    "joint_chunk",
    "mean_ci_over_seeds",
    "metrics_at_thresholds",
    "metrics_on_resamples",
    "metrics_on_weights",
    "paired_bootstrap_difference",
    "percentile_interval",
    "proportion_design_effect",
    "seed_mean_difference",
    "seed_mean_interval",
    "sensitivity_at_specificity",
    "silverman_bandwidths",
    "smoothed_youden_thresholds",
    "unpaired_difference",
    "wilson_interval",
    "youden_threshold",
]
