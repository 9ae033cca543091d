"""``--preset quick|paper``: quick settings as defaults that a flag still overrides, printed with a time estimate
before the stage starts, and written into every row, keyed apart from the final figures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import torchxrayvision as xrv

from benchmark.core.cli import parse_stage_args
from benchmark.core.presets import QUICK, estimate_seconds
from benchmark.core.results import read_results
from benchmark.fidelity.defaults import build_parser as quality_parser
from benchmark.models.classifiers import place_in_xrv_cache
from benchmark.privacy.defaults import build_parser as privacy_parser
from benchmark.utility.cli import main as utility_main
from benchmark.utility.defaults import build_parser as utility_parser
from tests.test_utility_pretrained import _real_split, _synthetic

PARSERS = {"utility": utility_parser, "image_quality": quality_parser, "privacy": privacy_parser}


@pytest.mark.parametrize("stage", list(PARSERS))
def test_quick_sets_its_values_paper_keeps_the_documented_defaults(stage: str) -> None:
    quick = parse_stage_args(PARSERS[stage](), ["--preset", "quick"])
    paper = parse_stage_args(PARSERS[stage](), ["--preset", "paper"])
    plain = parse_stage_args(PARSERS[stage](), [])
    defaults = PARSERS[stage]()
    for key, value in QUICK[stage].items():
        assert getattr(quick, key) == value
        assert getattr(paper, key) == getattr(plain, key) == defaults.get_default(key) != value
    assert (quick.preset, paper.preset, plain.preset) == ("quick", "paper", "paper")
    assert quick.extra_info == "preset=quick" and paper.extra_info == ""


def test_a_flag_beside_the_preset_wins_and_the_rows_say_custom() -> None:
    args = parse_stage_args(utility_parser(), ["--preset", "quick", "--epochs", "5", "--extra-info", "ckpt-900"])
    assert args.epochs == 5 and args.image_size == QUICK["utility"]["image_size"]
    assert args.preset == "quick+custom" and args.preset_changes == ["epochs"]
    assert args.extra_info == "ckpt-900;preset=quick"  # still keyed apart from the final rows


def test_a_trained_re_id_model_gets_the_small_size_and_a_given_one_keeps_its_own() -> None:
    trained = parse_stage_args(privacy_parser(), ["--preset", "quick", "--reid-train"])
    given = parse_stage_args(privacy_parser(), ["--preset", "quick", "--reid-model", "reid.pt"])
    assert trained.reid_image_size == 64 and given.reid_image_size is None


def test_the_estimate_grows_with_the_images_and_shrinks_with_the_quick_preset() -> None:
    counts = {"train": 2000, "val": 200, "test": 400, "synthetic": 2000}
    quick = parse_stage_args(utility_parser(), ["--preset", "quick", "--stage", "all"])
    paper = parse_stage_args(utility_parser(), ["--stage", "all"])
    fast = estimate_seconds("utility", quick, counts, cores=2)
    slow = estimate_seconds("utility", paper, counts, cores=2)
    assert 0 < fast < slow / 20
    assert estimate_seconds("utility", quick, {k: 2 * v for k, v in counts.items()}, cores=2) > fast
    # pretrained stage alone: 2400 images at ~15 img/s on 2 cores
    pretrained = parse_stage_args(utility_parser(), [])
    assert estimate_seconds("utility", pretrained, counts, cores=2) == pytest.approx(2400 / 15)


@pytest.fixture(scope="module")
def xrv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("xrv_cache")
    torch.manual_seed(0)
    place_in_xrv_cache(xrv.models.DenseNet(weights=None), "nih", cache)
    return cache


def test_a_quick_run_prints_its_settings_first_and_its_rows_stay_apart_from_the_final_ones(
        xrv_cache: Path, tmp_path: Path, capsys) -> None:
    real_csv = _real_split(tmp_path, "padchest")
    synthetic = _synthetic(tmp_path, real_csv)
    results = tmp_path / "results"
    common = ["--real", str(real_csv), "--synthetic", str(synthetic), "--classifier", "nih", "--xrv-cache-dir",
              str(xrv_cache), "--results-dir", str(results), "--batch-size", "8", "--num-workers", "0",
              "--label-map", "soft tissue mass=Mass", "--allow-leakage", "--extra-info", "ckpt-1"]
    assert utility_main([*common, "--preset", "quick"]) == 0
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith("preset quick (rows marked preset=quick, keyed apart from final ones): n-resamples 1000")
    assert "rough estimate on" in first and "20 real test, 0 train and 10 synthetic images" in first
    assert utility_main([*common, "--n-resamples", "1000"]) == 0
    rows = read_results("utility_pretrained", results)
    by_key = rows.groupby("extra_info")["preset"].agg(set).to_dict()
    assert by_key == {"ckpt-1;preset=quick": {"quick"}, "ckpt-1": {"paper+custom"}}
    assert len(rows) == 8  # 2 classes x real / synthetic, for each run: the quick rows were not replaced
    quick = rows[rows["preset"] == "quick"]
    assert set(pd.to_numeric(quick["n_resamples"])) == {1000}
