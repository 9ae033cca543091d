"""The pretrained stage scores each real test image once per classifier: later models read its outputs from the
feature cache (keyed by image content, weights and preprocessing) and say how many came from there."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchxrayvision as xrv

from benchmark.core.results import read_results
from benchmark.models.classifiers import place_in_xrv_cache
from benchmark.utility.cli import main as utility_main
from tests.test_utility_pretrained import _real_split, _synthetic


@pytest.fixture(scope="module")
def xrv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("xrv_cache")
    torch.manual_seed(0)
    place_in_xrv_cache(xrv.models.DenseNet(weights=None), "nih", cache)
    torch.manual_seed(1)
    place_in_xrv_cache(xrv.models.DenseNet(weights=None), "pc", cache)
    return cache


def _run(real_csv: Path, synthetic: Path, results: Path, xrv_cache: Path, capsys, *extra: str,
         classifier: str = "nih", model: str = "crops") -> tuple[dict[str, tuple[int, int]], pd.DataFrame, str]:
    status = utility_main(["--real", str(real_csv), "--synthetic", str(synthetic), "--classifier", classifier,
                           "--xrv-cache-dir", str(xrv_cache), "--results-dir", str(results), "--n-resamples", "1000",
                           "--batch-size", "8", "--num-workers", "0", "--model-name", model,
                           "--label-map", "soft tissue mass=Mass", "--allow-leakage", *extra])
    assert status == 0
    err = capsys.readouterr().err
    counts = {m[0]: (int(m[1]), int(m[2])) for m in
              re.findall(rf"pretrained {model} / (real|synthetic) images: \d+ \((\d+) scored, (\d+) from cache\)", err)}
    rows = read_results("utility_pretrained", results)
    run = results / "runs" / rows[rows["model_name"] == model]["run_id"].iloc[-1]
    return counts, pd.read_csv(run / "predictions_real.csv"), err


def test_a_second_model_reads_the_real_predictions_from_the_cache_and_they_are_the_same(
        xrv_cache: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("SYNTHCXR_PROGRESS", raising=False)
    real_csv = _real_split(tmp_path, "padchest")
    synthetic = _synthetic(tmp_path, real_csv)
    results = tmp_path / "results"
    first, first_predictions, first_log = _run(real_csv, synthetic, results, xrv_cache, capsys, model="first")
    second, second_predictions, _ = _run(real_csv, synthetic, results, xrv_cache, capsys, model="second")
    assert first == {"real": (20, 0), "synthetic": (10, 0)}
    assert first_log.count("pretrained: scoring real images: 20/20 img in ") == 1  # one line per loop in a log
    assert first_log.count("pretrained: intervals per class: 2/2 class in ") == 1  # the bootstrap, too
    assert "\r" not in first_log
    assert second == {"real": (0, 20), "synthetic": (0, 10)}
    scores = [c for c in first_predictions.columns if c.startswith("score:")]
    np.testing.assert_allclose(second_predictions[scores].to_numpy(), first_predictions[scores].to_numpy(),
                               rtol=0, atol=1e-6)


def test_other_weights_and_no_cache_score_again(xrv_cache: Path, tmp_path: Path, capsys) -> None:
    real_csv = _real_split(tmp_path, "padchest")
    synthetic = _synthetic(tmp_path, real_csv)
    results = tmp_path / "results"
    _run(real_csv, synthetic, results, xrv_cache, capsys, model="nih-model")
    other, _, _ = _run(real_csv, synthetic, results, xrv_cache, capsys, classifier="pc", model="pc-model")
    assert other == {"real": (20, 0), "synthetic": (10, 0)}  # other weights: their own outputs
    uncached, _, _ = _run(real_csv, synthetic, results, xrv_cache, capsys, "--no-cache", model="fresh")
    assert uncached == {"real": (20, 0), "synthetic": (10, 0)}
