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

import benchmark.utility_retrained as retrained
from benchmark.classifiers import load_checkpoint, save_checkpoint
from benchmark.data import DataError, read_split_csv
from benchmark.demo import DemoConfig, faithful_set, label_blind_set
from benchmark.phantoms import write_demo_dataset
from benchmark.results import read_results
from benchmark.stats import delong_roc_test, holm_adjust, mean_ci_over_seeds, paired_bootstrap_difference
from benchmark.synthetic import write_synthetic_set
from benchmark.training import load_tensors
from benchmark.utility_retrained import (
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

SIZE = 32
# Short, plain training that learns the 32 px phantoms' cardiomegaly and effusion in a few epochs on CPU.
FAST = {"image_size": SIZE, "batch_size": 16, "lr": 3e-3, "augment": False, "n_resamples": 1000, "progress": False,
        "cpu_threads": 1}  # one fixed thread count: CPU training results depend on it
# At 32 px the smallest masses are about 1.5 px across, so "soft tissue mass" and "normal" (no finding) stay near 0.85
# there; the every-finding requirement is tested at 64 px (test_real_setting_at_64px_...).
RELIABLE = ("cardiomegaly", "pleural effusion")


# ------------------------------------------------------------------------------------------------ data fixtures


def _rows(real) -> pd.DataFrame:
    """The split's rows in the form benchmark.demo's set makers take (source_row = row in the split CSV)."""
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
    for bad in ("1.5", "0", "-3", "lots", "150%"):
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


def test_synthetic_from_train_drops_images_made_from_other_splits(data: dict) -> None:
    real, from_test = data["real"], data["faithful_test"]
    assert len(make_pools(real, from_test, real.classes, "any").synthetic_rows) == len(from_test.frame)
    pools = make_pools(real, from_test, real.classes, "train")
    assert len(pools.synthetic_rows) == 0
    with pytest.raises(SizeError, match="needs synthetic images but none are available"):
        build_training_set(parse_settings("synthetic")[0], pools, seed=0)


# ------------------------------------------------------------------------------------------------ statistics


def _delong_reference(y: np.ndarray, models: list[np.ndarray], contrast: np.ndarray) -> tuple[float, float]:
    """O(n^2) DeLong (1988) with the explicit kernel over every positive-negative pair: (difference, p)."""
    pos, neg = y == 1, y == 0
    v10, v01, aucs = [], [], []
    for s in models:
        kernel = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        v10.append(kernel.mean(axis=1))
        v01.append(kernel.mean(axis=0))
        aucs.append(kernel.mean())
    cov = np.cov(np.array(v10)) / pos.sum() + np.cov(np.array(v01)) / neg.sum()
    difference = float(contrast @ np.array(aucs))
    return difference, float(2 * norm.sf(abs(difference) / math.sqrt(contrast @ cov @ contrast)))


def _fixed_predictions() -> tuple[np.ndarray, list[UnitPredictions]]:
    """Fixed labels (2 classes, some unknown) and predictions of a real and a synthetic setting, two seeds each."""
    rng = np.random.default_rng(42)
    n = 120
    labels = (rng.random((n, 2)) < 0.35).astype(float)
    labels[rng.choice(n, 7, replace=False), 1] = np.nan
    units = []
    for (setting, strength, thresholds), seed in itertools.product(
            (("real", 3.2, [0.5, 0.42]), ("synthetic", 1.0, [0.45, 0.6])), (0, 1)):
        scores = np.round(1 / (1 + np.exp(-(strength * np.nan_to_num(labels) + rng.normal(0, 1, (n, 2))))), 2)
        units.append(UnitPredictions(setting, f"{setting}:all", 100 if setting == "real" else 0,
                                     0 if setting == "real" else 100, seed, scores, np.array(thresholds),
                                     {"best_epoch": 3}))
    return labels, units


def test_comparison_with_real_uses_paired_delong_and_matches_an_explicit_reference() -> None:
    labels, units = _fixed_predictions()
    table = evaluate_units(units, labels, ["a", "b"], baseline="real:all", n_resamples=1000, seed=3)
    by_unit = {(u.setting, u.seed): u for u in units}
    for j, name in enumerate(["a", "b"]):
        known = ~np.isnan(labels[:, j])
        y = labels[known, j].astype(int)
        for seed in (0, 1):
            row = table[(table["setting"] == "synthetic") & (table["seed"] == str(seed)) & (table["class"] == name)]
            s, b = by_unit["synthetic", seed].scores[known, j], by_unit["real", seed].scores[known, j]
            reference = _delong_reference(y, [s, b], np.array([1.0, -1.0]))
            assert row["auroc_diff_vs_real"].item() == pytest.approx(reference[0], abs=1e-12)
            assert row["auroc_p_vs_real"].item() == pytest.approx(reference[1], rel=1e-9)
            assert row["auroc_p_vs_real"].item() == pytest.approx(delong_roc_test(y, s, b)["p_value"], rel=1e-12)
            # Accuracy / precision at each model's own threshold, paired bootstrap on the same resamples.
            t_s, t_b = by_unit["synthetic", seed].thresholds[j], by_unit["real", seed].thresholds[j]
            accuracy = ((s >= t_s) == y).mean() - ((b >= t_b) == y).mean()
            assert row["accuracy_diff_vs_real"].item() == pytest.approx(accuracy, abs=1e-12)
            for metric in ("accuracy", "precision", "recall", "f1"):
                expected = paired_bootstrap_difference(y, s - t_s, b - t_b, metric, threshold=0.0, n_resamples=1000,
                                                       seed=3)
                got = row[[f"{metric}_diff_vs_real", f"{metric}_diff_vs_real_ci_low",
                           f"{metric}_diff_vs_real_ci_high", f"{metric}_p_vs_real"]].to_numpy(float)[0]
                np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=metric)
        # The seed-mean row: DeLong on the contrast (mean of the synthetic AUROCs - mean of the real ones).
        mean = table[(table["setting"] == "synthetic") & (table["seed"] == "mean") & (table["class"] == name)]
        models = [by_unit["synthetic", 0].scores[known, j], by_unit["synthetic", 1].scores[known, j],
                  by_unit["real", 0].scores[known, j], by_unit["real", 1].scores[known, j]]
        reference = _delong_reference(y, models, np.array([0.5, 0.5, -0.5, -0.5]))
        assert mean["auroc_diff_vs_real"].item() == pytest.approx(reference[0], abs=1e-12)
        assert mean["auroc_p_vs_real"].item() == pytest.approx(reference[1], rel=1e-9)
    assert (table[table["setting"] == "synthetic"]["auroc_vs_real"] == "significantly worse").all()
    assert table[table["setting"] == "real"]["auroc_p_vs_real"].isna().all()


def test_with_one_seed_the_mean_row_repeats_the_per_seed_tests_exactly() -> None:
    labels, units = _fixed_predictions()
    one = [u for u in units if u.seed == 1]
    table = evaluate_units(one, labels, ["a", "b"], baseline="real:all", n_resamples=1000, seed=0)
    synthetic = table[table["setting"] == "synthetic"].set_index(["class", "seed"])
    columns = [c for c in synthetic.columns if "_vs_real" in c and not c.endswith(("_holm", "vs_real"))]
    for name in ("a", "b"):
        np.testing.assert_allclose(synthetic.loc[(name, "mean"), columns].to_numpy(float),
                                   synthetic.loc[(name, "1"), columns].to_numpy(float), rtol=1e-12)
    assert (synthetic.xs("mean", level="seed")["ci_method"] == "bootstrap over test images (one seed)").all()


def test_mean_rows_summarise_seeds_and_holm_adjusts_over_settings_and_classes() -> None:
    labels, units = _fixed_predictions()
    table = evaluate_units(units, labels, ["a", "b"], baseline="real:all", n_resamples=1000, seed=0)
    for _, block in table.groupby(["setting", "class"]):
        seeds = block[block["seed"] != "mean"].sort_values("seed")
        mean = block[block["seed"] == "mean"].iloc[0]
        summary = mean_ci_over_seeds(seeds["accuracy"].to_numpy(float))
        assert mean["accuracy"] == pytest.approx(summary["mean"]) and mean["accuracy_std"] == pytest.approx(
            summary["std"])
        clipped = (max(0.0, summary["ci_low"]), min(1.0, summary["ci_high"]))  # metrics live in [0, 1]
        assert (mean["accuracy_ci_low"], mean["accuracy_ci_high"]) == pytest.approx(clipped)
        assert 0.0 <= mean["accuracy_ci_low"] <= mean["accuracy_ci_high"] <= 1.0
        assert mean["n_seeds"] == 2 and mean["seeds"] == "0,1"
        assert mean["ci_method"] == "Student t over seeds, clipped to [0, 1]"
    for seed, block in table[table["setting"] == "synthetic"].groupby("seed"):
        np.testing.assert_allclose(block["auroc_p_vs_real_holm"], holm_adjust(block["auroc_p_vs_real"]))
        assert len(block) == 2, seed


def test_printed_table_has_settings_with_sizes_and_changes_against_real() -> None:
    labels, units = _fixed_predictions()
    table = evaluate_units(units, labels, ["a", "b"], baseline="real:all", n_resamples=1000, seed=0)
    text = format_retrained_table(table[table["seed"] == "mean"])
    assert text.count("== a (real test images") == 1 and "== b (real test images: n=113" in text
    assert "real:all (baseline)" in text and "AUROC" in text and "precision" in text
    synthetic_line = next(line for line in text.splitlines() if line.startswith("synthetic:all"))
    auroc = table[(table["setting"] == "synthetic") & (table["seed"] == "mean") & (table["class"] == "a")].iloc[0]
    assert f"{auroc['auroc']:.3f} [{auroc['auroc_ci_low']:.3f}, {auroc['auroc_ci_high']:.3f}] " \
           f"{auroc['auroc_diff_vs_real']:+.3f}***" in synthetic_line
    assert format_retrained_table(table) == text  # a full table is reduced to its mean rows


def test_cli_flags_make_the_config() -> None:
    args = build_parser().parse_args(["--settings", "real:1.1k,mixed:1.1k@0.3", "--seeds", "3,4", "--task", "binary",
                                      "--epochs", "7", "--image-size", "64", "--train-batch-size", "8", "--lr", "0.01",
                                      "--balance", "sampler", "--init", "pc", "--with-replacement", "--patience", "2",
                                      "--no-augment", "--n-resamples", "1500", "--seed", "9"])
    config = retrained_config_from_args(args)
    assert config.settings == ("real:1.1k", "mixed:1.1k@0.3") and config.seeds == (3, 4) and config.task == "binary"
    assert (config.epochs, config.image_size, config.batch_size, config.lr) == (7, 64, 8, 0.01)
    assert config.balance == "sampler" and config.init == "pc" and config.with_replacement and not config.augment
    assert (config.patience, config.n_resamples, config.stats_seed) == (2, 1500, 9)
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
    # Measured over training seeds 0, 1, 2 (this test runs seed 0): cardiomegaly 0.987-0.998, effusion 0.958-0.975,
    # normal 0.820-0.839, mass 0.765-0.791; each bound lies 4 or more seed-to-seed spreads below the lowest.
    outcome, _, _ = sweep
    aurocs = {name: _mean_row(outcome, "real", name)["auroc"] for name in outcome.summary["class"].unique()}
    print("real-setting test AUROC:", {k: round(v, 3) for k, v in aurocs.items()})
    for name in RELIABLE:
        assert aurocs[name] > 0.9, aurocs
    assert min(aurocs.values()) > 0.7, aurocs


@pytest.mark.slow
def test_real_setting_at_64px_learns_every_finding_with_a_ci_reaching_0_9(tmp_path: Path) -> None:
    # 64 px (the demo size of the issue), 400 patients, 16 epochs of batch 16 from scratch, 2 CPU threads: about
    # 4 minutes here. Measured over training seeds 0, 1, 2 (this test runs seed 0), AUROC [bootstrap 95% CI]:
    #   normal            0.906 [0.854, 0.946]  0.921 [0.875, 0.959]  0.954 [0.920, 0.981]
    #   soft tissue mass  0.898 [0.849, 0.944]  0.910 [0.859, 0.953]  0.948 [0.912, 0.979]
    #   cardiomegaly and pleural effusion 0.999-1.0 [0.995-1.0, 1.0]
    # The point values sit on 0.9 for the small masses (~27 test positives), so the test asserts the CI: every
    # finding is learned (lower bound above 0.75, measured 0.85 or more) and 0.9 is within reach (upper bound above
    # 0.9, measured 0.94 or more).
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


def test_label_blind_synthetic_is_near_chance_and_flagged_worse_than_real(sweep) -> None:
    # Trained on labels that say nothing about the images, the network still ranks test images by some property
    # of their appearance, whose link to a finding has a random sign: per class AUROC scatters around 0.5.
    # Measured over training seeds 0, 1, 2: mean over classes 0.52-0.56, largest class 0.59-0.67; against real,
    # cardiomegaly -0.41 to -0.55 and effusion -0.29 to -0.42, every p below 1e-8.
    outcome, _, _ = sweep
    aurocs = {name: _mean_row(outcome, "synthetic", name)["auroc"] for name in outcome.summary["class"].unique()}
    print("label-blind synthetic-setting test AUROC:", {k: round(v, 3) for k, v in aurocs.items()})
    assert abs(np.mean(list(aurocs.values())) - 0.5) < 0.15 and max(aurocs.values()) < 0.8, aurocs
    for name in RELIABLE:
        row = _mean_row(outcome, "synthetic", name)
        assert row["auroc_p_vs_real"] < 0.001 and row["auroc_diff_vs_real"] < -0.2
        assert row["auroc_vs_real"] == "significantly worse"


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


def test_rerunning_a_finished_sweep_trains_nothing_and_gives_the_same_table(sweep, data: dict,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, results, config = sweep
    monkeypatch.setattr(retrained, "_train_unit", lambda *a, **k: pytest.fail("nothing should be trained"))
    again = run_retrained_stage(data["real"], data["blind"], config, model_name="demo-label-blind",
                                results_dir=results)
    assert again.run_id == outcome.run_id and again.trained == [] and len(again.resumed) == 2
    pd.testing.assert_frame_equal(again.table.drop(columns="train_seconds"),
                                  outcome.table.drop(columns="train_seconds"))


def test_another_synthetic_set_reuses_the_real_baseline_instead_of_retraining_it(
        sweep, data: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, results, config = sweep
    monkeypatch.setattr(retrained, "_train_unit", lambda *a, **k: pytest.fail("the real baseline is already trained"))
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
    config = RetrainedConfig(settings=("real:120", "mixed:120@0.5", "synthetic:100"), seeds=(0,), epochs=2,
                             **FAST)
    reference = run_retrained_stage(real, half, config, model_name="m", results_dir=tmp_path / "uninterrupted")
    assert reference.trained == ["real_r120_s0_seed0", "mixed_r60_s60_seed0", "synthetic_r0_s100_seed0"]

    original = retrained._train_unit
    calls: list[str] = []

    def dies_on_the_second_unit(unit, *args, **kwargs):
        calls.append(unit.id)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed mid-sweep")
        return original(unit, *args, **kwargs)

    monkeypatch.setattr(retrained, "_train_unit", dies_on_the_second_unit)
    with pytest.raises(KeyboardInterrupt):
        run_retrained_stage(real, half, config, model_name="m", results_dir=tmp_path / "interrupted")
    runs = list((tmp_path / "interrupted" / "runs").iterdir())
    assert len(runs) == 1 and [p.parent.name for p in runs[0].glob("units/*/done.json")] == ["real_r120_s0_seed0"]
    assert not (runs[0] / "units" / "mixed_r60_s60_seed0" / "done.json").exists()
    partial = read_results("utility_retrained", tmp_path / "interrupted")
    assert set(partial["setting"]) == {"real"} and set(partial["seed"]) == {"0"}  # the finished unit's rows

    calls.clear()
    monkeypatch.setattr(retrained, "_train_unit", lambda unit, *a, **k: calls.append(unit.id) or original(unit, *a,
                                                                                                            **k))
    resumed = run_retrained_stage(real, half, config, model_name="m", results_dir=tmp_path / "interrupted")
    assert calls == ["mixed_r60_s60_seed0", "synthetic_r0_s100_seed0"]
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


def test_a_setting_spec_label_round_trips() -> None:
    for text in ("real:all", "synthetic:0.5", "real+synthetic:100+5500", "mixed:1100@0.3"):
        assert parse_settings(text)[0].label == text
    assert SettingSpec("mixed", real=Size(count=10), mix_fraction=0.5).label == "mixed:10@0.5"
