"""The main job with nothing configured runs the built-in demo end to end: every stage, the ranking of the demo
generators, and rows in all three results tables (the session's ``demo_results`` fixture runs it once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.phantoms import FINDINGS
from benchmark.results import read_results
from benchmark.utility_metrics import main

DEMO_MODELS = {"demo-faithful", "demo-label-blind", "demo-untrained-ddpm"}
pytestmark = pytest.mark.slow


def test_demo_exits_zero_and_ranks_faithful_over_label_blind_over_untrained(demo_results) -> None:
    assert demo_results.status == 0, demo_results.output
    assert "ranking: demo-faithful > demo-label-blind > demo-untrained-ddpm -> as expected" in demo_results.output


def test_demo_writes_pretrained_rows_with_a_leakage_free_classifier(demo_results) -> None:
    rows = read_results("utility_pretrained", demo_results.results_dir)
    assert set(rows["model_name"]) == DEMO_MODELS
    assert len(rows) == 3 * 2 * 4  # models x image sources x classes
    assert rows["classifier"].str.fullmatch(r"demo-densenet121-[0-9a-f]{16}").all()  # no checkout path in the key
    assert (rows["leakage"] == "none").all()  # the classifier population is disjoint from the demo's real data
    faithful = rows[(rows["model_name"] == "demo-faithful") & (rows["image_source"] == "synthetic")]
    assert faithful["auroc"].astype(float).min() > 0.7


def test_demo_writes_retrained_rows_for_every_setting_and_seed(demo_results) -> None:
    rows = read_results("utility_retrained", demo_results.results_dir)
    assert set(rows["model_name"]) == {"demo-faithful"}
    assert {"real", "synthetic", "real+synthetic", "mixed"} <= set(rows["setting"])
    assert {"0", "1", "mean"} <= set(rows["seed"])
    assert set(rows["class"]) == set(FINDINGS)
    real = rows[(rows["setting"] == "real") & (rows["seed"] == "mean")]
    assert real["auroc"].astype(float).min() > 0.7  # measured: normal 0.79, cardiomegaly 0.97, mass 0.82, effusion 0.87
    assert set(rows.loc[rows["setting"] == "synthetic", "n_synthetic"]) == {"100", "200"}  # points of a data-size curve


def test_demo_writes_image_quality_rows_overall_and_per_class(demo_results) -> None:
    rows = read_results("image_quality_metrics", demo_results.results_dir)
    assert set(rows["model_name"]) == DEMO_MODELS
    assert len(rows) == 3 * (1 + len(FINDINGS))
    fid = rows[rows["class"] == "overall"].set_index("model_name")["fid"].astype(float)
    assert fid["demo-faithful"] < fid["demo-untrained-ddpm"]  # phantoms look like the real phantoms; noise does not
    for folder in rows["report_dir"]:
        assert (Path(folder) / "memorisation_closest.png").is_file()


def test_demo_trains_its_classifier_once_and_caches_it(demo_results, session_assets: Path) -> None:
    assert len(list((session_assets / "demo_classifier").glob("*/config.json"))) == 1


def test_rerunning_a_demo_stage_replaces_its_rows_and_never_duplicates(demo_results) -> None:
    assert main(["--demo-dir", str(demo_results.demo_dir), "--results-dir", str(demo_results.results_dir),
                 "--num-workers", "0", "--stage", "pretrained"]) == 0
    assert len(read_results("utility_pretrained", demo_results.results_dir)) == 24
