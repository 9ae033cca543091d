"""The printed, RoentGen-shaped table of a sweep's seed-mean rows (:func:`format_retrained_table`)."""

from __future__ import annotations

import math
import textwrap

import pandas as pd

from benchmark.core.stats import MIN_SEEDS_FOR_SPREAD
from benchmark.utility.retrained.config import (
    ARCHITECTURE,
    AT_PREVALENCE,
    DETECTABLE_LIMIT,
    PREVALENCE_FREE,
    SPEC_TARGET,
)

# ---------------------------------------------------------------------------------------------- the printed table


def _stars(p: float) -> str:
    if not isinstance(p, float) or math.isnan(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else " ns"


def _cell(row: pd.Series, m: str, width: int) -> str:
    value = row.get(m)
    if not isinstance(value, float) or math.isnan(value):
        return f"{'undefined':<{width}}"
    cell = f"{value:.3f} [{row.get(f'{m}_ci_low', math.nan):.3f}, {row.get(f'{m}_ci_high', math.nan):.3f}]"
    diff = row.get(f"{m}_diff_vs_real")
    if isinstance(diff, float) and not math.isnan(diff):
        cell += f" {diff:+.3f}{_stars(row.get(f'{m}_p_vs_real_holm', math.nan))}"
    return f"{cell:<{width}}"


def format_retrained_table(summary: pd.DataFrame) -> str:
    """RoentGen-shaped text: one block per class, rows = settings with their sizes; columns = the prevalence-free
    metrics (AUROC, sensitivity at the target specificity, recall and specificity at the val threshold), then
    accuracy and precision at the test prevalence; each as mean [95% CI] with the change against the real baseline
    (Holm-adjusted stars, only with enough seeds), the AUROC difference detectable at 80% power, and flags.

    ``summary`` is :attr:`RetrainedOutcome.summary` (the ``seed = mean`` rows); a full table is filtered to them.
    """
    if summary is None or len(summary) == 0:
        return "(no retrained results)"
    frame = summary[summary["seed"].astype(str) == "mean"] if "seed" in summary else summary
    width = 30
    target = next((float(t) for t in frame.get("sens_at_spec_target", pd.Series(dtype=float)) if pd.notna(t)),
                  SPEC_TARGET)
    names = {"auroc": "AUROC", "sens_at_spec": f"sens@spec{target:g}", "recall": "recall", "specificity":
             "specificity", "accuracy": "accuracy", "precision": "precision"}
    head = f"{'setting':<30} {'real':>6} {'synth':>6} {'seeds':>5} | "
    baseline = next((b for b in frame.get("baseline", pd.Series(dtype=str)) if isinstance(b, str) and b), "")
    family = next((f for f in frame.get("holm_family", pd.Series(dtype=str)) if isinstance(f, str) and f),
                  "per metric over settings x classes")
    against = baseline or "the real baseline"
    lines = [f"Retrained {ARCHITECTURE}: selected on real val, tested on real test images. Mean over seeds [95% CI: "
             f"seed spread + test-set sampling, patients resampled], then the change vs {against} (seed-mean test, "
             f"Welch t; Holm-adjusted {family}: "
             f"* p<0.05, ** p<0.01, *** p<0.001, ns not significant). No stars below {MIN_SEEDS_FOR_SPREAD} seeds "
             "per setting (seeds marked †: the CI covers test-set sampling only). recall / specificity / accuracy / "
             "precision at each model's threshold chosen on real val (re-chosen in every bootstrap resample); "
             "MDD80: the AUROC difference detectable with 80% power (! above "
             f"{DETECTABLE_LIMIT:g}: 'no significant difference' is not evidence of equality); train+: positive "
             "training images of the class (mean over seeds)."]
    lines = textwrap.wrap(lines[0], 120)
    for name, block in frame.groupby("class", sort=False):
        first = block.iloc[0]
        prevalence = first.get("prevalence", math.nan)
        lines += ["", f"== {name} (real test images: n={int(first['n_test'])}, {int(first['positives'])} positive, "
                      f"prevalence {prevalence:.3f}) =="]
        for group, metrics in (("prevalence-free", PREVALENCE_FREE), (f"at the test prevalence {prevalence:.3f}",
                                                                      AT_PREVALENCE)):
            header = head + " | ".join(f"{names[m]:<{width}}" for m in metrics)
            if group == "prevalence-free":
                header += " | MDD80  train+"
            lines += [f"-- {group}", header, "-" * len(header)]
            for _, row in block.iterrows():
                label = str(row["setting_spec"]) + (" (baseline)" if row["setting_spec"] == baseline else "")
                n_seeds = int(row["n_seeds"])
                seeds = f"{n_seeds}{'†' if n_seeds < MIN_SEEDS_FOR_SPREAD else ''}"
                line = (f"{label:<30} {int(row['n_real']):>6} {int(row['n_synthetic']):>6} {seeds:>5} | "
                        + " | ".join(_cell(row, m, width) for m in metrics))
                if group == "prevalence-free":
                    mdd = row.get("auroc_mdd80", math.nan)
                    mdd = (f"{mdd:.3f}{'!' if mdd > DETECTABLE_LIMIT else ' '}"
                           if isinstance(mdd, float) and math.isfinite(mdd) else f"{'-':<6}")
                    train = row.get("train_positives", math.nan)
                    line += f" | {mdd:<6} {'' if not math.isfinite(float(train)) else f'{train:g}':>6}"
                lines.append(line.rstrip())
    return "\n".join(lines)
