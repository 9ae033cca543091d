"""Retrained-classifier utility: training-set construction, statistics against the real baseline, a phantom sweep
(real AUROC, label-blind synthetic at chance and flagged), outputs, options, and resuming an interrupted sweep."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import norm
from scipy.stats import t as t_distribution
from sklearn.metrics import roc_auc_score

import benchmark.utility.retrained.execution as execution
from benchmark.core.results import read_results
from benchmark.core.stats import (
    METHOD_COMBINED,
    METHOD_TEST_ONLY,
    auroc,
    auroc_ci,
    clustered_proportion_ci,
    delong_contrast,
    delong_roc_test,
    detectable_difference,
    holm_adjust,
    seed_mean_difference,
    seed_mean_interval,
    sensitivity_at_specificity,
    youden_threshold,
)
from benchmark.data import DataError, read_split_csv
from benchmark.data.synthetic import write_synthetic_set
from benchmark.demo.phantoms import write_demo_dataset
from benchmark.demo.run import DemoConfig, faithful_set, label_blind_set
from benchmark.models.classifiers import load_checkpoint, save_checkpoint
from benchmark.models.training import load_tensors
from benchmark.utility.retrained import (
    TABLE_METRICS,
    Pools,
    RetrainedConfig,
    SettingSpec,
    Size,
    SizeError,
    UnitPredictions,
    build_parser,
    build_training_set,
    evaluate_units,
    format_retrained_table,
    make_pools,
    parse_settings,
    parse_size,
    plan_units,
    retrained_config_from_args,
    run_retrained_stage,
)
from benchmark.utility.test_labels import keyed_extra_info, unkeyed_extra_info

SIZE = 32
# Short, plain training that learns the 32 px phantoms' cardiomegaly and effusion in a few epochs on CPU.
FAST = {"image_size": SIZE, "batch_size": 16, "lr": 3e-3, "augment": False, "n_resamples": 1000, "progress": False,
        "cpu_threads": 1}  # one fixed thread count: CPU training results depend on it
# At 32 px the smallest masses are about 1.5 px across, so "soft tissue mass" and "normal" (no finding) stay near 0.85
# there; the every-finding requirement is tested at 64 px (test_real_setting_at_64px_...).
RELIABLE = ("cardiomegaly", "pleural effusion")


# ------------------------------------------------------------------------------------------------ data fixtures


def _rows(real) -> pd.DataFrame:
    """The split's rows in the form benchmark.demo.run's set makers take (source_row = row in the split CSV)."""
    frame = real.frame.copy()
    frame["source_row"] = np.arange(len(frame))
    frame["finding"] = [real.classes[int(c)] for c in frame["class_label"]]
    return frame


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 32 px phantom split (280 patients) and synthetic sets made from its train rows."""
    root = tmp_path_factory.mktemp("retrained_data")
    write_demo_dataset(root / "real", n_patients=280, images_per_patient=2, size=SIZE, seed=0)
    real = read_split_csv(root / "real" / "split.csv")
    rows = _rows(real)
    train = rows[rows["split"] == "train"].reset_index(drop=True)
    demo = DemoConfig(image_size=SIZE)
    return {
        "root": root,
        "real": real,
        "train": train,
        "blind": label_blind_set(root / "blind", train, real.classes, demo),
        "faithful_half": faithful_set(root / "faithful_half", train.iloc[: len(train) // 2], real.classes, demo),
        "faithful_test": faithful_set(root / "faithful_test", rows[rows["split"] == "test"], real.classes, demo),
    }


# ------------------------------------------------------------------------------------------------ sizes, settings


def test_sizes_are_counts_fractions_or_all() -> None:
    assert parse_size("1100") == Size(count=1100) and parse_size("1.1k") == Size(count=1100)
    assert parse_size("5.5K") == Size(count=5500)
    assert parse_size("0.5") == Size(fraction=0.5) and parse_size("50%") == Size(fraction=0.5)
    assert parse_size("all") == Size(fraction=1.0) and str(parse_size("all")) == "all"
    assert parse_size("0.25").resolve(388) == 97 and parse_size("1.1k").resolve(10) == 1100
    assert parse_size("max200") == Size(count=200, at_most=True) and str(parse_size("max200")) == "max200"
    assert parse_size("max200").resolve(120) == 120 and parse_size("max1.1k").resolve(5000) == 1100
    for bad in ("1.5", "0", "-3", "lots", "150%", "max0.5", "max"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)


def test_roentgen_small_data_table_parses_into_settings() -> None:
    specs = parse_settings("real:1.1k,synthetic:1.1k,mixed:1.1k,synthetic:5.5k,real+synthetic:1.1k+5.5k")
    assert [s.label for s in specs] == ["real:1100", "synthetic:1100", "mixed:1100@0.5", "synthetic:5500",
                                        "real+synthetic:1100+5500"]
    defaults = parse_settings("real,synthetic,real+synthetic,mixed:0.5@0.3", n_real="0.8", n_synthetic="2k")
    assert [s.label for s in defaults] == ["real:0.8", "synthetic:2000", "real+synthetic:0.8+2000", "mixed:0.5@0.3"]
    with pytest.raises(ValueError, match="unknown kind 'fake'"):
        parse_settings("real,fake:10")
    with pytest.raises(ValueError, match="given twice"):
        parse_settings("real,real:all")
    with pytest.raises(ValueError, match="N\\+M"):
        parse_settings("real+synthetic:100")


# ------------------------------------------------------------------------------------------------ training sets


def test_size_larger_than_available_stops_with_a_clear_error(data: dict, tmp_path: Path) -> None:
    real, blind = data["real"], data["blind"]
    pools = make_pools(real, blind, real.classes)
    n_train = len(pools.train_rows)
    with pytest.raises(SizeError, match=rf"'real:5000' asks for 5000 real train images but only {n_train} exist.*"
                                        "--with-replacement"):
        build_training_set(parse_settings("real:5000")[0], pools, seed=0)
    with pytest.raises(SizeError, match=rf"'synthetic:1000' asks for 1000 synthetic images but only {n_train} exist"):
        build_training_set(parse_settings("synthetic:1000")[0], pools, seed=0)
    # The stage checks every setting before anything trains: it stops at once and trains nothing.
    config = RetrainedConfig(settings=("real:50", "real+synthetic:50+9000"), seeds=(0,), epochs=1, **FAST)
    with pytest.raises(SizeError, match="9000 synthetic images"):
        run_retrained_stage(real, blind, config, model_name="too-big", results_dir=tmp_path)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*/units/*"))
    # With replacement every image is used twice, then the rest once more (no image three times).
    repeated = build_training_set(parse_settings("synthetic:1000")[0], pools, seed=0, with_replacement=True)
    counts = np.bincount(repeated.synthetic, minlength=n_train)
    assert len(repeated.synthetic) == 1000 and set(np.unique(counts)) <= {2, 3}
    assert (counts == 3).sum() == 1000 - 2 * n_train


def test_mixed_replaces_chosen_real_rows_by_the_synthetic_images_made_from_them(data: dict) -> None:
    real, blind = data["real"], data["blind"]
    pools = make_pools(real, blind, real.classes)
    spec = parse_settings("mixed:all@0.25")[0]
    mixed = build_training_set(spec, pools, seed=1)
    plain = build_training_set(parse_settings("real:all")[0], pools, seed=1)
    n = len(pools.train_rows)
    assert len(mixed.synthetic) == len(mixed.replaced) == round(0.25 * n)
    assert len(mixed.real) + len(mixed.synthetic) == n
    # The real rows kept and the rows replaced are exactly the real setting's rows, without overlap.
    assert sorted([*mixed.real, *mixed.replaced]) == sorted(plain.real)
    assert not set(mixed.real) & set(mixed.replaced)
    # Each synthetic image was made from the row it replaces (source_row = the row's place in the split CSV).
    sources = blind.frame["source_row"].astype(int).to_numpy()[pools.synthetic_rows[mixed.synthetic]]
    np.testing.assert_array_equal(sources, pools.train_rows[mixed.replaced])
    np.testing.assert_array_equal(mixed.labels(pools)[len(mixed.real):], pools.train_labels[mixed.replaced])
    # Another seed replaces other rows.
    other = build_training_set(spec, pools, seed=2)
    assert set(other.replaced) != set(mixed.replaced)


def test_mixed_uses_only_rows_that_have_synthetic_images_and_says_when_too_few(data: dict) -> None:
    real, half = data["real"], data["faithful_half"]
    pools = make_pools(real, half, real.classes)
    covered = set(half.frame["source_row"].astype(int))
    mixed = build_training_set(parse_settings("mixed:all@0.4")[0], pools, seed=0)
    assert {int(pools.train_rows[r]) for r in mixed.replaced} <= covered
    with pytest.raises(SizeError, match=r"only \d+ of them have synthetic images made from them"):
        build_training_set(parse_settings("mixed:all@0.75")[0], pools, seed=0)


def test_mixed_stops_when_a_synthetic_images_labels_disagree_with_its_source_row(data: dict, tmp_path: Path) -> None:
    real, train = data["real"], data["train"]
    rows = train[["prompt", "source_row", "class_label", *real.classes]].copy()
    rows.insert(2, "seed", "")
    rows["cardiomegaly"] = 1 - rows["cardiomegaly"].astype(int)  # claims the wrong label for every row
    images = np.zeros((len(rows), SIZE, SIZE), dtype=np.uint8)
    wrong = write_synthetic_set(tmp_path / "wrong", images, rows, {"model": "wrong", "classes": real.classes})
    pools = make_pools(real, wrong, real.classes)
    with pytest.raises(DataError, match=r"claims source_row .* differ from that row's"):
        build_training_set(parse_settings("mixed:0.5@0.5")[0], pools, seed=0)


def test_settings_of_the_same_size_share_their_real_rows_and_synthetic_images(data: dict) -> None:
    real, blind = data["real"], data["blind"]
    pools = make_pools(real, blind, real.classes)
    units = plan_units(parse_settings("real:100,real+synthetic:100+60,mixed:100@0.5,synthetic:60"), (0, 1), pools)
    by = {(u.spec.kind, u.seed): u.training for u in units}
    for seed in (0, 1):
        assert list(by["real+synthetic", seed].real) == list(by["real", seed].real)
        assert sorted([*by["mixed", seed].real, *by["mixed", seed].replaced]) == sorted(by["real", seed].real)
        assert list(by["real+synthetic", seed].synthetic) == list(by["synthetic", seed].synthetic)
    assert set(by["real", 0].real) != set(by["real", 1].real)
    assert [u.id for u in units][:2] == ["real_r100_s0_seed0", "real_r100_s0_seed1"]
    assert {u.id for u in units} >= {"real+synthetic_r100_s60_seed0", "mixed_r50_s50_seed1"}


def test_draws_are_stratified_so_a_rare_class_gets_its_share_on_every_seed() -> None:
    # 2000 train rows, 20 of them positive for a rare class (1%): a draw of 200 expects 2 positives. Drawn
    # unstratified, 12% of seeds would get none (hypergeometric); drawn within strata (each row's rarest positive
    # class), every seed gets 2, in the real and in the synthetic draw, and the common class its 60 +- 2.
    labels = np.zeros((2000, 2), dtype=np.float32)
    labels[:20, 0] = 1.0
    labels[20:620, 1] = 1.0
    labels[5:10, 1] = 1.0  # some rare-class rows carry the common class too: their stratum is the rare class
    pools = Pools(np.arange(2000), labels, np.arange(2000), labels.copy(), np.arange(2000))
    spec = parse_settings("real+synthetic:200+200")[0]
    for seed in range(40):
        training = build_training_set(spec, pools, seed)
        positives = pools.positives(training)
        assert (positives[:, 0] == 2).all() and ((positives[:, 1] >= 58) & (positives[:, 1] <= 62)).all(), positives
        assert len(set(training.real)) == 200
    assert len({tuple(sorted(build_training_set(spec, pools, s).real[:5])) for s in range(5)}) == 5  # seeds differ


def test_synthetic_images_made_from_test_rows_stop_the_sweep_by_default(data: dict) -> None:
    real, from_test = data["real"], data["faithful_test"]
    with pytest.raises(DataError, match=r"synthetic\.csv: \d+ synthetic image\(s\) were made from val/test rows.*"
                                        r"--synthetic-from any"):
        make_pools(real, from_test, real.classes)  # the default is "train"


def test_an_override_to_use_test_derived_images_is_recorded_and_train_subset_leaves_them_out(data: dict) -> None:
    real, from_test = data["real"], data["faithful_test"]
    anyway = make_pools(real, from_test, real.classes, "any")
    assert len(anyway.synthetic_rows) == len(from_test.frame)
    assert anyway.synthetic_from.startswith("any (override)") and "biased upward" in anyway.synthetic_from
    subset = make_pools(real, from_test, real.classes, "train-subset")
    assert len(subset.synthetic_rows) == 0 and subset.synthetic_from.startswith("train-subset")
    with pytest.raises(SizeError, match="needs synthetic images but none are available"):
        build_training_set(parse_settings("synthetic")[0], subset, seed=0)


# ------------------------------------------------------------------------------------------------ statistics


def _delong_reference(y: np.ndarray, models: list[np.ndarray], contrast: np.ndarray) -> tuple[float, float]:
    """O(n^2) DeLong (1988) with the explicit kernel over every positive-negative pair: (difference, variance)."""
    pos, neg = y == 1, y == 0
    v10, v01, aucs = [], [], []
    for s in models:
        kernel = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        v10.append(kernel.mean(axis=1))
        v01.append(kernel.mean(axis=0))
        aucs.append(kernel.mean())
    cov = np.atleast_2d(np.cov(np.array(v10))) / pos.sum() + np.atleast_2d(np.cov(np.array(v01))) / neg.sum()
    return float(contrast @ np.array(aucs)), float(contrast @ cov @ contrast)


N_TEST, N_VAL = 120, 80


def _fixed_predictions(seeds: tuple[int, ...] = (0, 1, 2)) -> tuple[dict, list[UnitPredictions]]:
    """Fixed labels (2 classes, some unknown; 2 images per patient) of test and val images, and the predictions of a
    real and a synthetic setting for each seed (val scores too: thresholds are Youden's J on val)."""
    rng = np.random.default_rng(42)
    split = {"test_labels": (rng.random((N_TEST // 2, 2)) < 0.35).astype(float).repeat(2, axis=0),
             "test_patients": np.arange(N_TEST) // 2,
             "val_labels": (rng.random((N_VAL // 2, 2)) < 0.35).astype(float).repeat(2, axis=0),
             "val_patients": 1000 + np.arange(N_VAL) // 2}
    split["test_labels"][rng.choice(N_TEST, 7, replace=False), 1] = np.nan
    def scores(labels: np.ndarray, strength: float, shift: float) -> np.ndarray:
        noise = rng.normal(0, 1, labels.shape) + shift  # a per-seed shift: seeds differ
        return np.round(1 / (1 + np.exp(-(strength * np.nan_to_num(labels) + noise))), 2)

    units = []
    for (setting, strength), seed in itertools.product((("real", 3.2), ("synthetic", 1.0)), seeds):
        shift = rng.normal(0, 0.4)
        units.append(UnitPredictions(setting, f"{setting}:all", 100 if setting == "real" else 0,
                                     0 if setting == "real" else 100, seed,
                                     scores(split["test_labels"], strength, shift), np.array([0.5, 0.5]),
                                     {"best_epoch": 3},
                                     val_scores=scores(split["val_labels"], strength, shift),
                                     train_positives=np.array([[30, 2], [0, 0]]) if setting == "real"
                                     else np.array([[0, 0], [35, 0]])))
    return split, units


def _evaluate(units: list[UnitPredictions], split: dict, **kwargs) -> pd.DataFrame:
    return evaluate_units(units, classes=["a", "b"], baseline="real:all", n_resamples=1000, seed=3,
                          **{**split, **kwargs})


def _known(split: dict, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    known = ~np.isnan(split["test_labels"][:, j])
    return known, split["test_labels"][known, j].astype(int), split["test_patients"][known]


def _row(table: pd.DataFrame, setting: str, seed: str, name: str) -> pd.Series:
    return table[(table["setting"] == setting) & (table["seed"] == seed) & (table["class"] == name)].iloc[0]


def test_per_seed_auroc_has_a_newcombe_interval_widened_for_patients() -> None:
    split, units = _fixed_predictions()
    table = _evaluate(units, split)
    for j, name in enumerate(["a", "b"]):
        known, y, patients = _known(split, j)
        for unit in units:
            row = _row(table, unit.setting, str(unit.seed), name)
            expected = auroc_ci(y, unit.scores[known, j], clusters=patients)
            np.testing.assert_allclose(row[["auroc", "auroc_ci_low", "auroc_ci_high"]].to_numpy(float), expected,
                                       rtol=1e-12)
            plain = auroc_ci(y, unit.scores[known, j])
            assert row["auroc_ci_high"] - row["auroc_ci_low"] >= plain[2] - plain[1] - 1e-12
            assert row["n_patients"] == len(np.unique(patients)) and "patient design effect" in row["ci_method"]


def test_per_seed_differences_from_the_baseline_are_clustered_delong_and_carry_no_p_value() -> None:
    split, units = _fixed_predictions()
    table = _evaluate(units, split)
    by_unit = {(u.setting, u.seed): u for u in units}
    for j, name in enumerate(["a", "b"]):
        known, y, patients = _known(split, j)
        for seed in (0, 1, 2):
            row = _row(table, "synthetic", str(seed), name)
            s, b = by_unit["synthetic", seed].scores[known, j], by_unit["real", seed].scores[known, j]
            difference, _ = _delong_reference(y, [s, b], np.array([1.0, -1.0]))
            test = delong_roc_test(y, s, b, clusters=patients)
            half = norm.ppf(0.975) * math.sqrt(test["variance"])
            assert row["auroc_diff_vs_real"] == pytest.approx(difference, abs=1e-12)
            assert (row["auroc_diff_vs_real_ci_low"], row["auroc_diff_vs_real_ci_high"]) == pytest.approx(
                (difference - half, difference + half), abs=1e-12)
            assert row["auroc_mdd80"] == pytest.approx(detectable_difference(math.sqrt(test["variance"])))
            assert math.isnan(row["auroc_p_vs_real"]) and row["auroc_vs_real"] == ""  # descriptive: no star


def test_seed_mean_auroc_interval_adds_the_seed_spread_to_the_delong_variance_of_the_mean() -> None:
    split, units = _fixed_predictions()
    table = _evaluate(units, split)
    for j, name in enumerate(["a", "b"]):
        known, y, patients = _known(split, j)
        for setting in ("real", "synthetic"):
            models = [u.scores[known, j] for u in units if u.setting == setting]
            expected = seed_mean_interval([auroc(y, s) for s in models],
                                          delong_contrast(y, models, [], clusters=patients)["variance"])
            # never narrower than the mean of the seeds' own (Newcombe) intervals
            own = np.mean([auroc_ci(y, s, clusters=patients) for s in models], axis=0)
            row = _row(table, setting, "mean", name)
            assert (row["auroc"], row["auroc_ci_low"], row["auroc_ci_high"], row["seed_df"]) == pytest.approx(
                (expected["mean"], min(expected["ci_low"], own[1]), max(expected["ci_high"], own[2]), expected["df"]),
                rel=1e-12)
            assert row["n_seeds"] == 3 and row["seeds"] == "0,1,2" and row["ci_method"].startswith(METHOD_COMBINED)


def test_seed_mean_comparison_counts_both_seed_spreads_and_holm_adjusts_each_metric_over_settings_and_classes(
) -> None:
    split, units = _fixed_predictions()
    table = _evaluate(units, split)
    for j, name in enumerate(["a", "b"]):
        known, y, patients = _known(split, j)
        a = [u.scores[known, j] for u in units if u.setting == "synthetic"]
        b = [u.scores[known, j] for u in units if u.setting == "real"]
        expected = seed_mean_difference([auroc(y, s) for s in a], [auroc(y, s) for s in b],
                                        delong_contrast(y, a, b, clusters=patients)["variance"])
        row = _row(table, "synthetic", "mean", name)
        assert (row["auroc_diff_vs_real"], row["auroc_diff_vs_real_ci_low"], row["auroc_diff_vs_real_ci_high"],
                row["auroc_p_vs_real"]) == pytest.approx((expected["difference"], expected["ci_low"],
                                                          expected["ci_high"], expected["p_value"]), rel=1e-12)
        assert row["auroc_mdd80"] == pytest.approx(detectable_difference(expected["se"]), rel=1e-12)
        assert row["underpowered"] == (row["auroc_mdd80"] > 0.1)
    means = table[table["seed"] == "mean"]
    for metric in ("auroc", "sens_at_spec", "recall", "specificity", "accuracy", "precision", "f1"):
        np.testing.assert_allclose(means[f"{metric}_p_vs_real_holm"], holm_adjust(means[f"{metric}_p_vs_real"]))
    compared = means[means["setting"] == "synthetic"]
    assert (compared["holm_family"] == "per metric: the 2 seed-mean comparisons with real:all (1 settings x 2 "
                                       "classes with enough seeds)").all()
    assert (compared["auroc_vs_real"] == "significantly worse").all()


def test_threshold_metrics_of_the_seed_mean_add_the_bootstrap_variance_of_the_mean_to_the_seed_spread() -> None:
    # The seed-mean interval of accuracy is seed_mean_interval of the seeds' values with the variance of their mean
    # over the shared patient resamples: se^2 = std^2 / K + v_test with v_test > 0, Welch-Satterthwaite df, and
    # mean -+ t_df * se, or the mean of the seeds' own intervals where that is wider.
    split, units = _fixed_predictions()
    table = _evaluate(units, split)
    for name in ("a", "b"):
        seeds = table[(table["setting"] == "synthetic") & (table["class"] == name) & (table["seed"] != "mean")]
        mean = _row(table, "synthetic", "mean", name)
        values = seeds["accuracy"].to_numpy(float)
        assert mean["accuracy"] == pytest.approx(values.mean())
        assert mean["accuracy_std"] == pytest.approx(values.std(ddof=1))
        seed_part = values.var(ddof=1) / 3
        assert mean["accuracy_se"] ** 2 > seed_part * 1.05
        assert mean["accuracy_df"] == pytest.approx(mean["accuracy_se"] ** 4 * 2 / seed_part**2)
        half = t_distribution.ppf(0.975, mean["accuracy_df"]) * mean["accuracy_se"]
        # never narrower than the mean of the seeds' own intervals
        own = seeds[["accuracy_ci_low", "accuracy_ci_high"]].to_numpy(float).mean(axis=0)
        assert (mean["accuracy_ci_low"], mean["accuracy_ci_high"]) == pytest.approx(
            (min(mean["accuracy"] - half, own[0]), max(mean["accuracy"] + half, own[1])))


def test_with_two_seeds_the_interval_is_test_set_only_never_a_point_and_no_star_is_given() -> None:
    split, units = _fixed_predictions(seeds=(0, 1))
    table = _evaluate(units, split)
    means = table[table["seed"] == "mean"]
    assert (means["auroc_ci_low"] < means["auroc"]).all() and (means["auroc"] < means["auroc_ci_high"]).all()
    assert means["ci_method"].str.startswith(METHOD_TEST_ONLY).all()
    synthetic = means[means["setting"] == "synthetic"]
    assert synthetic["auroc_p_vs_real"].isna().all() and synthetic["auroc_diff_vs_real"].notna().all()
    assert (synthetic["auroc_vs_real"] == "no test: the seed spread needs at least 3 seeds per setting").all()
    text = format_retrained_table(table)
    assert "*" not in text.split("\n== ")[1] and " 2† | " in text


def test_perfect_seeds_get_a_seed_mean_interval_below_1_not_the_point_1() -> None:
    # Every seed separates the classes: both variance parts of the seed mean are 0 (DeLong's at AUROC 1, the seed
    # spread of equal values), yet 15 positive images do not prove a perfect classifier. The interval keeps the
    # seeds' own Newcombe / Wilson intervals.
    y = np.r_[np.ones(15), np.zeros(60)]
    units = [UnitPredictions("real", "real:all", 75, 0, seed, (y + 0.1 * seed)[:, None], np.array([0.5]))
             for seed in range(3)]
    row = evaluate_units(units, y[:, None], ["c"], baseline=None, n_resamples=1000).query("seed == 'mean'").iloc[0]
    assert row["auroc"] == 1.0 and row["auroc_ci_low"] == pytest.approx(auroc_ci(y, y)[1])
    assert row["auroc_ci_low"] < 0.95
    assert row["recall"] == 1.0 and row["recall_ci_low"] < 0.85


def test_with_one_seed_the_mean_row_repeats_the_seed_rows_intervals() -> None:
    split, units = _fixed_predictions(seeds=(1,))
    table = _evaluate(units, split)
    for name in ("a", "b"):
        seed, mean = _row(table, "synthetic", "1", name), _row(table, "synthetic", "mean", name)
        for metric in ("auroc", "sens_at_spec", "recall", "precision"):
            columns = [metric, f"{metric}_ci_low", f"{metric}_ci_high"]
            np.testing.assert_allclose(mean[columns].to_numpy(float), seed[columns].to_numpy(float), rtol=1e-12)
        assert mean["ci_method"].startswith("one seed: its own intervals")


def test_the_val_threshold_is_youden_on_val_and_choosing_it_again_widens_the_recall_interval() -> None:
    split, units = _fixed_predictions(seeds=(0,))
    rechosen = _evaluate(units, split)
    for j, name in enumerate(["a", "b"]):
        val_known = ~np.isnan(split["val_labels"][:, j])
        for unit in units:
            row = _row(rechosen, unit.setting, "0", name)
            chosen = youden_threshold(split["val_labels"][val_known, j], unit.val_scores[val_known, j])
            assert row["threshold"] == pytest.approx(chosen) and row["threshold_policy"].startswith("val-youden")
            # the same threshold, taken as fixed: a clustered Wilson interval of the test patients alone
            fixed_unit = UnitPredictions(**{**unit.__dict__, "thresholds": np.full(2, chosen), "val_scores": None,
                                            "threshold_policy": "0.5"})
            fixed = _row(_evaluate([fixed_unit], split), unit.setting, "0", name)
            known, y, patients = _known(split, j)
            hits = unit.scores[known, j] >= chosen
            assert (fixed["recall_ci_low"], fixed["recall_ci_high"]) == pytest.approx(
                clustered_proportion_ci(hits[y == 1], patients[y == 1])[1:])
            assert row["recall"] == pytest.approx(fixed["recall"])
            assert row["recall_ci_low"] <= fixed["recall_ci_low"] and row["recall_ci_high"] >= fixed["recall_ci_high"]


def test_sensitivity_at_the_target_specificity_is_the_primary_threshold_metric() -> None:
    split, units = _fixed_predictions(seeds=(0,))
    table = _evaluate(units, split, spec_target=0.8)
    for j, name in enumerate(["a", "b"]):
        known, y, _ = _known(split, j)
        for unit in units:
            row = _row(table, unit.setting, "0", name)
            assert row["sens_at_spec_target"] == 0.8
            assert row["sens_at_spec"] == pytest.approx(sensitivity_at_specificity(y, unit.scores[known, j], 0.8))
            assert row["sens_at_spec_ci_low"] <= row["sens_at_spec"] <= row["sens_at_spec_ci_high"]
    assert list(TABLE_METRICS[:4]) == ["auroc", "sens_at_spec", "recall", "specificity"]  # the table leads with them


def test_rows_carry_sizes_prevalence_and_training_positives() -> None:
    split, units = _fixed_predictions(seeds=(0,))
    table = _evaluate(units, split)
    for j, name in enumerate(["a", "b"]):
        _, y, _ = _known(split, j)
        rows = table[table["class"] == name]
        assert (rows["n_positive"] == y.sum()).all() and (rows["n_negative"] == len(y) - y.sum()).all()
        np.testing.assert_allclose(rows["prevalence"], y.mean())
    real = _row(table, "real", "0", "b")
    assert (real["train_positives"], real["train_positives_real"], real["train_positives_synthetic"]) == (2, 2, 0)
    synthetic = _row(table, "synthetic", "0", "a")
    assert (synthetic["train_positives"], synthetic["train_positives_synthetic"]) == (35, 35)
    assert _row(table, "synthetic", "0", "b")["note"].startswith("no positive training image")


def test_metrics_without_a_positive_test_image_are_undefined_and_printed_so() -> None:
    split, units = _fixed_predictions(seeds=(0,))
    split["test_labels"][:, 1] = np.where(np.isnan(split["test_labels"][:, 1]), np.nan, 0.0)  # no positive of b
    table = _evaluate(units, split)
    row = _row(table, "synthetic", "0", "b")
    for metric in ("auroc", "sens_at_spec", "precision", "recall", "f1"):
        assert math.isnan(row[metric]) and math.isnan(row[f"{metric}_ci_low"]), metric
    assert row["specificity"] > 0 and "precision: no positive test image" in row["undefined_metrics"]
    block = format_retrained_table(table).split("== b ")[1]
    assert "undefined" in block and "0.000 [0.000, 0.000]" not in block


def test_printed_table_leads_with_prevalence_free_metrics_and_shows_changes_power_and_prevalence() -> None:
    split, units = _fixed_predictions()
    table = _evaluate(units, split)
    text = format_retrained_table(table[table["seed"] == "mean"])
    assert text.count("== a (real test images") == 1 and "== b (real test images: n=113" in text
    assert "real:all (baseline)" in text and "-- prevalence-free" in text and "-- at the test prevalence" in text
    header = next(line for line in text.splitlines() if line.startswith("setting") and "AUROC" in line)
    assert header.index("AUROC") < header.index("sens@spec0.9") < header.index("recall") < header.index("MDD80")
    synthetic_line = next(line for line in text.splitlines() if line.startswith("synthetic:all"))
    row = _row(table, "synthetic", "mean", "a")
    assert f"{row['auroc']:.3f} [{row['auroc_ci_low']:.3f}, {row['auroc_ci_high']:.3f}] " \
           f"{row['auroc_diff_vs_real']:+.3f}***" in synthetic_line
    assert f"{row['auroc_mdd80']:.3f}" in synthetic_line
    assert f"prevalence {row['prevalence']:.3f}" in text
    assert format_retrained_table(table) == text  # a full table is reduced to its mean rows


def test_the_recall_interval_covers_the_expected_recall_of_a_threshold_chosen_on_few_val_positives() -> None:
    # 8 positive and 80 negative val images choose Youden's threshold, 15 + 150 test images measure recall; scores
    # binormal (separation 1.5, AUROC 0.86). The target is what the procedure delivers on average: the population
    # recall (specificity) at the val-chosen threshold, averaged over val draws (0.706 and 0.796 over 20000 val
    # draws; the threshold alone moves recall with SD 0.144). Measured over these 300 replicates: the joint val +
    # test patient bootstrap with the smoothed re-chosen threshold covered 0.990 (recall) and 0.973 (specificity);
    # re-chosen without smoothing 0.973 and 0.907; a bootstrap of the test images at the chosen threshold 0.790.
    rng = np.random.default_rng(2024)

    def sample(n_pos: int, n_neg: int) -> tuple[np.ndarray, np.ndarray]:
        return np.r_[np.ones(n_pos), np.zeros(n_neg)], np.r_[rng.normal(1.5, 1, n_pos), rng.normal(0, 1, n_neg)]

    thresholds = np.array([youden_threshold(*sample(8, 80)) for _ in range(20000)])
    target = {"recall": float(np.mean(norm.sf(thresholds - 1.5))), "specificity": float(np.mean(norm.cdf(thresholds)))}
    covered = dict.fromkeys(target, 0)
    for replicate in range(300):
        y_val, s_val = sample(8, 80)
        y, s = sample(15, 150)
        unit = UnitPredictions("real", "real:1", 1, 0, 0, s[:, None], np.array([0.5]), val_scores=s_val[:, None])
        row = evaluate_units([unit], y[:, None], ["c"], baseline=None, n_resamples=400, seed=replicate,
                             val_labels=y_val[:, None]).iloc[0]
        for metric, value in target.items():
            covered[metric] += row[f"{metric}_ci_low"] <= value <= row[f"{metric}_ci_high"]
    assert covered["recall"] / 300 > 0.93 and covered["specificity"] / 300 > 0.93, covered


def test_cli_flags_make_the_config() -> None:
    args = build_parser().parse_args(["--settings", "real:1.1k,mixed:1.1k@0.3", "--seeds", "3,4", "--task", "binary",
                                      "--epochs", "7", "--image-size", "64", "--train-batch-size", "8", "--lr", "0.01",
                                      "--balance", "sampler", "--init", "pc", "--with-replacement", "--patience", "2",
                                      "--no-augment", "--n-resamples", "1500", "--seed", "9",
                                      "--test-labels", "physician"])
    config = retrained_config_from_args(args)
    assert config.settings == ("real:1.1k", "mixed:1.1k@0.3") and config.seeds == (3, 4) and config.task == "binary"
    assert (config.epochs, config.image_size, config.batch_size, config.lr) == (7, 64, 8, 0.01)
    assert config.balance == "sampler" and config.init == "pc" and config.with_replacement and not config.augment
    assert (config.patience, config.n_resamples, config.stats_seed, config.test_labels) == (2, 1500, 9, "physician")
    assert retrained_config_from_args(build_parser().parse_args([])).init is None  # scratch
    with pytest.raises(ValueError, match="task"):
        RetrainedConfig(task="regression")


# ------------------------------------------------------------------------------------------------ a phantom sweep


@pytest.fixture(scope="module")
def sweep(data: dict, tmp_path_factory: pytest.TempPathFactory):
    """real (all train rows) vs the label-blind synthetic set (half its size), one seed, 4 short epochs."""
    results = tmp_path_factory.mktemp("retrained_results")
    config = RetrainedConfig(settings=("real", "synthetic:0.5"), seeds=(0,), epochs=4, patience=4, **FAST)
    outcome = run_retrained_stage(data["real"], data["blind"], config, model_name="demo-label-blind",
                                  results_dir=results)
    return outcome, results, config


def _mean_row(outcome, setting: str, name: str) -> pd.Series:
    table = outcome.summary
    return table[(table["setting"] == setting) & (table["class"] == name)].iloc[0]


def test_real_setting_reaches_high_auroc_on_held_out_patients(sweep) -> None:
    # Measured over training seeds 0, 1, 2 (this test runs seed 0; draws stratified by class): cardiomegaly
    # 0.991-1.000, effusion 0.951-0.979, normal 0.815-0.826, mass 0.794-0.822; each bound lies 4 or more
    # seed-to-seed spreads below the lowest.
    outcome, _, _ = sweep
    aurocs = {name: _mean_row(outcome, "real", name)["auroc"] for name in outcome.summary["class"].unique()}
    print("real-setting test AUROC:", {k: round(v, 3) for k, v in aurocs.items()})
    for name in RELIABLE:
        assert aurocs[name] > 0.9, aurocs
    assert min(aurocs.values()) > 0.7, aurocs


@pytest.mark.slow
def test_real_setting_at_64px_learns_every_finding_with_a_ci_reaching_0_9(tmp_path: Path) -> None:
    # 64 px (the demo size of the issue), 400 patients, 16 epochs of batch 16 from scratch, 2 CPU threads: about
    # 4 minutes on an idle machine (25 on a shared, loaded one). Measured over training seeds 0, 1, 2 (this test
    # runs seed 0), AUROC [Newcombe 95% CI, widened for the patients' 2 images]:
    #   normal            0.919 [0.851, 0.956]  0.912 [0.842, 0.951]  0.925 [0.857, 0.961]
    #   soft tissue mass  0.909 [0.831, 0.952]  0.903 [0.825, 0.947]  0.932 [0.862, 0.966]
    #   cardiomegaly and pleural effusion 0.999-1.0 [0.965-0.969, 1.0]
    # The point values sit on 0.9 for the small masses (~27 test positives), so the test asserts the CI: every
    # finding is learned (lower bound above 0.75, measured 0.825 or more) and 0.9 is within reach (upper bound above
    # 0.9, measured 0.947 or more).
    write_demo_dataset(tmp_path / "real", n_patients=400, images_per_patient=2, size=64, seed=0)
    real = read_split_csv(tmp_path / "real" / "split.csv")
    train = _rows(real)
    train = train[train["split"] == "train"].reset_index(drop=True)
    unused = faithful_set(tmp_path / "faithful", train.iloc[:8], real.classes, DemoConfig(image_size=64))
    config = RetrainedConfig(settings=("real",), seeds=(0,), image_size=64, epochs=16, patience=16, batch_size=16,
                             lr=3e-3, augment=False, n_resamples=1000, progress=False, cpu_threads=2)
    outcome = run_retrained_stage(real, unused, config, model_name="real-only", results_dir=tmp_path / "results")
    rows = {name: _mean_row(outcome, "real", name) for name in real.classes}
    cis = {name: (round(r["auroc"], 3), round(r["auroc_ci_low"], 3), round(r["auroc_ci_high"], 3))
           for name, r in rows.items()}
    print("real-setting test AUROC [95% CI] at 64 px:", cis)
    assert len(train) == 560 and set(rows) == {"normal", "cardiomegaly", "soft tissue mass", "pleural effusion"}
    for row in rows.values():
        assert row["auroc_ci_low"] > 0.75 and row["auroc_ci_high"] > 0.9, cis


def test_label_blind_synthetic_is_near_chance_and_far_below_real_but_one_seed_gets_no_star(sweep) -> None:
    # Trained on labels that say nothing about the images, the network still ranks test images by some property
    # of their appearance, whose link to a finding has a random sign: per class AUROC scatters around 0.5.
    # Measured over training seeds 0, 1, 2: mean over classes 0.47-0.53, largest class 0.56-0.63; against real,
    # cardiomegaly -0.49 to -0.59 and effusion -0.34 to -0.46, the per-seed clustered DeLong intervals' upper ends
    # -0.37 to -0.48 and -0.21 to -0.35. The same sweep with 3 seeds finds every class significantly worse (seed-mean
    # test, Holm p 4e-3 to 5e-7).
    # With one seed the seed-to-seed spread is unknown: the difference is described (clustered DeLong interval),
    # not tested.
    outcome, _, _ = sweep
    aurocs = {name: _mean_row(outcome, "synthetic", name)["auroc"] for name in outcome.summary["class"].unique()}
    print("label-blind synthetic-setting test AUROC:", {k: round(v, 3) for k, v in aurocs.items()})
    assert abs(np.mean(list(aurocs.values())) - 0.5) < 0.15 and max(aurocs.values()) < 0.8, aurocs
    seed_rows = outcome.table[(outcome.table["setting"] == "synthetic") & (outcome.table["seed"] == "0")]
    for name in RELIABLE:
        row = _mean_row(outcome, "synthetic", name)
        assert row["auroc_diff_vs_real"] < -0.2 and math.isnan(row["auroc_p_vs_real"])
        assert row["auroc_vs_real"] == "no test: the seed spread needs at least 3 seeds per setting"
        seed_row = seed_rows[seed_rows["class"] == name].iloc[0]
        assert seed_row["auroc_diff_vs_real_ci_high"] < -0.1  # the descriptive interval lies far below 0


def test_sweep_writes_rows_curves_checkpoints_and_the_table(sweep, data: dict) -> None:
    outcome, results, _ = sweep
    classes = data["real"].classes
    rows = read_results("utility_retrained", results)
    assert len(rows) == 2 * 2 * len(classes)  # 2 settings x (seed 0, mean) x classes, each key once
    assert set(rows["seed"]) == {"0", "mean"} and (rows["run_id"] == outcome.run_id).all()
    n_train = len(data["train"])
    assert set(zip(rows["setting"], rows["n_real"], rows["n_synthetic"], strict=True)) == {
        ("real", str(n_train), "0"), ("synthetic", "0", str(round(n_train / 2)))}
    for column in ("auroc_ci_low", "accuracy_ci_high", "precision_ci_low", "config_hash", "git_commit"):
        assert (rows[column] != "").all(), column
    folder = outcome.run_folder
    assert (folder / "learning_curves.png").stat().st_size > 1000 and (folder / "summary.txt").is_file()
    assert "real:all (baseline)" in (folder / "summary.txt").read_text()
    unit = folder / "units" / f"real_r{n_train}_s0_seed0"
    assert (unit / "learning_curve.png").is_file() and json.loads((unit / "done.json").read_text())["info"]["n_train"]
    history = json.loads((unit / "history.json").read_text())["histories"]["all"]
    assert len(history) == 4 and {"train_loss", "val_mean_auroc"} <= history[0].keys()
    # The saved checkpoint is the model that was evaluated: it reproduces the stored test predictions.
    classifier = load_checkpoint(unit / "checkpoint")
    assert classifier.outputs == classes and classifier.input_size == SIZE
    stored = pd.read_csv(unit / "predictions_test.csv")
    test_images = load_tensors(stored["image"].tolist(), SIZE)
    np.testing.assert_allclose(classifier.predict(test_images).numpy(),
                               stored[[f"score:{c}" for c in classes]].to_numpy(), atol=1e-5)
    listing = pd.read_csv(folder / "units" / f"synthetic_r0_s{round(n_train / 2)}_seed0" / "training_set.csv")
    assert (listing["source"] == "synthetic").all() and listing["image"].str.contains("/blind/images/").all()
    # Every row records its training positives of its class, as the unit's training list holds them.
    drawn = data["blind"].frame.iloc[listing["synthetic_row"].astype(int).to_numpy()]
    for name in classes:
        row = rows[(rows["setting"] == "synthetic") & (rows["seed"] == "0") & (rows["class"] == name)].iloc[0]
        expected = int(pd.to_numeric(drawn[name]).sum())
        assert float(row["train_positives"]) == float(row["train_positives_synthetic"]) == expected
        assert row["n_positive"] == row["positives"] and float(row["prevalence"]) > 0
        assert "patient design effect" in row["ci_method"]


def test_rerunning_a_finished_sweep_trains_nothing_and_gives_the_same_table(sweep, data: dict, capsys,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, results, config = sweep
    monkeypatch.setattr(execution, "_train_unit", lambda *a, **k: pytest.fail("nothing should be trained"))
    monkeypatch.setenv("SYNTHCXR_PROGRESS", "lines")
    talking = RetrainedConfig(**{**config.__dict__, "progress": True})  # progress is not part of the sweep's key
    again = run_retrained_stage(data["real"], data["blind"], talking, model_name="demo-label-blind",
                                results_dir=results)
    assert again.run_id == outcome.run_id and again.trained == [] and len(again.resumed) == 2
    classes = len(data["real"].classes)
    assert capsys.readouterr().err.count(f"retrained: intervals per class: {classes}/{classes} class in ") == 1
    pd.testing.assert_frame_equal(again.table.drop(columns="train_seconds"),
                                  outcome.table.drop(columns="train_seconds"))


def test_another_synthetic_set_reuses_the_real_baseline_instead_of_retraining_it(
        sweep, data: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, results, config = sweep
    monkeypatch.setattr(execution, "_train_unit", lambda *a, **k: pytest.fail("the real baseline is already trained"))
    other = run_retrained_stage(data["real"], data["faithful_half"], RetrainedConfig(**{**config.__dict__,
                                                                                       "settings": ("real",)}),
                                model_name="another-generator", results_dir=results)
    real_unit = f"real_r{len(data['train'])}_s0_seed0"
    assert other.run_id != outcome.run_id and other.reused == [real_unit] and other.trained == other.resumed == []
    copied = json.loads((other.run_folder / "units" / real_unit / "done.json").read_text())
    assert copied["reused_from"] == outcome.run_id and (other.run_folder / "units" / real_unit / "checkpoint").is_dir()
    columns = ["class", "seed", "auroc", "auroc_ci_low", "accuracy", "precision_ci_high"]
    first = outcome.table[outcome.table["setting"] == "real"][columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(other.table[columns].reset_index(drop=True), first)


# ------------------------------------------------------------------------------------------------ resuming


def _comparable(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=["run_id", "train_seconds"]).reset_index(drop=True)


def test_an_interrupted_sweep_resumes_with_the_missing_units_only(data: dict, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    real, half = data["real"], data["faithful_half"]
    config = RetrainedConfig(settings=("real:120", "mixed:120@0.4", "synthetic:100"), seeds=(0,), epochs=2,
                             **FAST)
    reference = run_retrained_stage(real, half, config, model_name="m", results_dir=tmp_path / "uninterrupted")
    assert reference.trained == ["real_r120_s0_seed0", "mixed_r72_s48_seed0", "synthetic_r0_s100_seed0"]

    original = execution._train_unit
    calls: list[str] = []

    def dies_on_the_second_unit(unit, *args, **kwargs):
        calls.append(unit.id)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed mid-sweep")
        return original(unit, *args, **kwargs)

    monkeypatch.setattr(execution, "_train_unit", dies_on_the_second_unit)
    with pytest.raises(KeyboardInterrupt):
        run_retrained_stage(real, half, config, model_name="m", results_dir=tmp_path / "interrupted")
    runs = list((tmp_path / "interrupted" / "runs").iterdir())
    assert len(runs) == 1 and [p.parent.name for p in runs[0].glob("units/*/done.json")] == ["real_r120_s0_seed0"]
    assert not (runs[0] / "units" / "mixed_r72_s48_seed0" / "done.json").exists()
    partial = read_results("utility_retrained", tmp_path / "interrupted")
    assert set(partial["setting"]) == {"real"} and set(partial["seed"]) == {"0"}  # the finished unit's rows

    calls.clear()
    monkeypatch.setattr(execution, "_train_unit", lambda unit, *a, **k: calls.append(unit.id) or original(unit, *a,
                                                                                                            **k))
    resumed = run_retrained_stage(real, half, config, model_name="m", results_dir=tmp_path / "interrupted")
    assert calls == ["mixed_r72_s48_seed0", "synthetic_r0_s100_seed0"]
    assert resumed.resumed == ["real_r120_s0_seed0"] and resumed.run_folder == runs[0]
    pd.testing.assert_frame_equal(_comparable(resumed.table), _comparable(reference.table), check_exact=False,
                                  rtol=1e-9)
    final = read_results("utility_retrained", tmp_path / "interrupted")
    assert len(final) == 3 * 2 * len(real.classes) and not final.duplicated(["setting", "n_real", "n_synthetic",
                                                                             "seed", "class"]).any()
    # --no-resume starts a new run that trains everything again.
    calls.clear()
    fresh = run_retrained_stage(real, half, RetrainedConfig(**{**config.__dict__, "resume": False,
                                                               "settings": ("real:120",)}),
                                model_name="m", results_dir=tmp_path / "interrupted")
    assert fresh.run_id != resumed.run_id and calls == ["real_r120_s0_seed0"]


# ------------------------------------------------------------------------------------------------ options


def test_binary_task_with_balance_and_init_from_a_checkpoint(data: dict, tmp_path: Path) -> None:
    real = read_split_csv(data["root"] / "real" / "split.csv", classes=list(RELIABLE))
    torch.manual_seed(0)
    from torchxrayvision.models import DenseNet

    start = DenseNet(weights=None, num_classes=3, apply_sigmoid=True).eval()
    save_checkpoint(start, tmp_path / "init", ["x", "y", "z"], trained_on=["elsewhere"], input_size=SIZE)
    config = RetrainedConfig(settings=("real:48",), seeds=(0,), epochs=1, task="binary", balance="loss",
                             init=str(tmp_path / "init"), **{**FAST, "lr": 1e-12})
    outcome = run_retrained_stage(real, data["blind"], config, model_name="binary", results_dir=tmp_path / "r")
    unit = outcome.run_folder / "units" / "real_r48_s0_seed0"
    for name in RELIABLE:
        model = load_checkpoint(unit / f"checkpoint_{name.replace(' ', '_')}")
        assert model.outputs == [name]
        # lr ~ 0: the convolution weights are still the initial checkpoint's (BatchNorm statistics do move).
        torch.testing.assert_close(model.model.features.conv0.weight, start.features.conv0.weight, atol=1e-6, rtol=0)
    assert set(outcome.summary["class"]) == set(RELIABLE) and outcome.summary["auroc"].notna().all()
    assert (outcome.table["balance"] == "loss").all() and (outcome.table["task"].dropna() == "binary").all()


def test_physician_test_labels_score_the_same_models_on_the_physician_rows_under_their_own_key(
        data: dict, tmp_path: Path) -> None:
    frame = pd.read_csv(data["root"] / "real" / "split.csv", dtype=str, keep_default_na=False)
    patients = sorted(frame.loc[frame["split"] == "test", "patient_id"].unique())
    frame["label_source"] = np.where(frame["patient_id"].isin(patients[::3]), "physician", "labeller")
    frame.to_csv(tmp_path / "split.csv", index=False)
    real = read_split_csv(tmp_path / "split.csv", image_root=data["root"] / "real", classes=list(RELIABLE))
    config = RetrainedConfig(settings=("real:48",), seeds=(0,), epochs=1, **FAST)
    everything = run_retrained_stage(real, data["blind"], config, model_name="m", extra_info="run1",
                                     results_dir=tmp_path / "r")
    physician = run_retrained_stage(real, data["blind"], RetrainedConfig(**{**config.__dict__,
                                                                           "test_labels": "physician"}),
                                    model_name="m", extra_info="run1", results_dir=tmp_path / "r")
    assert physician.trained == [] and physician.reused == ["real_r48_s0_seed0"]  # the very same model
    rows = read_results("utility_retrained", tmp_path / "r")
    assert sorted(rows["extra_info"].unique()) == ["run1", "run1;test_labels=physician"]  # side by side
    assert {unkeyed_extra_info(v) for v in rows["extra_info"]} == {"run1"}  # run_all finds both as its own
    assert (rows.groupby("extra_info")["test_labels"].unique().map(list).to_dict()
            == {"run1": ["all"], "run1;test_labels=physician": ["physician"]})
    predictions = pd.read_csv(physician.run_folder / "units" / "real_r48_s0_seed0" / "predictions_test.csv")
    test = real.subset("test").frame
    assert len(predictions) == len(test)  # every test image is still predicted
    chosen = (test["label_source"] == "physician").to_numpy()
    for name in RELIABLE:
        y, s = predictions[f"label:{name}"].to_numpy(), predictions[f"score:{name}"].to_numpy()
        row = physician.summary[physician.summary["class"] == name].iloc[0]
        assert row["n_positive"] + row["n_negative"] == chosen.sum() < len(test)
        assert row["auroc"] == pytest.approx(roc_auc_score(y[chosen], s[chosen]), abs=1e-12)
        whole = everything.summary[everything.summary["class"] == name].iloc[0]
        assert whole["n_positive"] + whole["n_negative"] == len(test)
        assert whole["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_physician_test_labels_need_a_label_source_column(data: dict, tmp_path: Path) -> None:
    config = RetrainedConfig(settings=("real:48",), seeds=(0,), epochs=1, test_labels="physician", **FAST)
    with pytest.raises(DataError, match="label_source"):
        run_retrained_stage(data["real"], data["blind"], config, model_name="m", results_dir=tmp_path / "r")


def test_a_setting_spec_label_round_trips() -> None:
    for text in ("real:all", "synthetic:0.5", "real+synthetic:100+5500", "mixed:1100@0.3"):
        assert parse_settings(text)[0].label == text
    assert SettingSpec("mixed", real=Size(count=10), mix_fraction=0.5).label == "mixed:10@0.5"


@pytest.mark.parametrize("extra_info", ["", "run1", "a;;b", "a;", "run_all demo"])
def test_physician_rows_are_keyed_apart_and_the_users_extra_info_comes_back_unchanged(extra_info: str) -> None:
    keyed = keyed_extra_info(extra_info, "physician")
    assert keyed != extra_info and keyed.endswith("test_labels=physician")
    assert unkeyed_extra_info(keyed) == extra_info and keyed_extra_info(keyed, "physician") == keyed
    assert keyed_extra_info(extra_info, "all") == extra_info
