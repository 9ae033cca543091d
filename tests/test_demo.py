"""The main job with nothing configured runs the built-in demo end to end and ranks the demo generators."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.results import read_results
from benchmark.utility_metrics import main


@pytest.mark.slow
def test_demo_runs_end_to_end_and_ranks_faithful_over_label_blind_over_untrained(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for variable in ("REAL_CSV", "SYNTHETIC_DIR", "MODEL_NAME", "RESULTS_DIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("SYNTHCXR_ASSETS", str(tmp_path / "assets"))
    status = main(["--demo-dir", str(tmp_path / "demo"), "--results-dir", str(tmp_path / "results"),
                   "--num-workers", "0"])
    output = capsys.readouterr().out
    assert status == 0, output
    assert "ranking: demo-faithful > demo-label-blind > demo-untrained-ddpm -> as expected" in output
    rows = read_results("utility_pretrained", tmp_path / "results")
    assert set(rows["model_name"]) == {"demo-faithful", "demo-label-blind", "demo-untrained-ddpm"}
    assert len(rows) == 3 * 2 * 4  # models x image sources x classes
    assert rows["classifier"].str.fullmatch(r"demo-densenet121-[0-9a-f]{16}").all()  # no checkout path in the key
    assert (rows["leakage"] == "none").all()  # the classifier population is disjoint from the demo's real data
    faithful = rows[(rows["model_name"] == "demo-faithful") & (rows["image_source"] == "synthetic")]
    assert faithful["auroc"].astype(float).min() > 0.7
    assert (tmp_path / "assets" / "demo_classifier").is_dir()  # cached for the next run
    assert main(["--demo-dir", str(tmp_path / "demo"), "--results-dir", str(tmp_path / "results"),
                 "--num-workers", "0"]) == 0
    assert len(read_results("utility_pretrained", tmp_path / "results")) == 24  # rerun replaces, never duplicates
