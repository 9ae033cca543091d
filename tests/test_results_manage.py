"""``./scripts/results.sh list / remove`` (``benchmark.core.manage``): what the tables hold, and taking rows out."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from benchmark.core import manage
from benchmark.core.results import read_results, remove_rows, upsert_rows


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    for model, extra in (("ddpm", ""), ("ddpm", "ema"), ("sd-finetune", "")):
        upsert_rows("utility_pretrained", [
            {"model_name": model, "extra_info": extra, "classifier": "densenet", "image_source": "synthetic",
             "class": c, "auroc": 0.7} for c in ("cardiomegaly", "soft tissue mass")], results_dir=folder)
        upsert_rows("image_quality_metrics", [{"model_name": model, "extra_info": extra, "feature_extractor": "xrv",
                                               "class": "overall", "fid": 12.5}], results_dir=folder)
    return folder


def test_list_shows_each_model_with_its_rows_and_keys_per_table(results: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert manage.main(["--results-dir", str(results), "list"]) == 0
    out = capsys.readouterr().out
    assert "utility_pretrained.csv (6 rows; key: model_name, extra_info, classifier, image_source, class)" in out
    assert "  ddpm [extra_info 'ema']: 2 rows; classifier: densenet; image_source: synthetic; " \
           "class: cardiomegaly, soft tissue mass" in out
    assert "image_quality_metrics.csv (3 rows" in out and "  sd-finetune: 1 rows; feature_extractor: xrv" in out


def test_remove_takes_out_only_that_models_rows_and_keeps_a_backup_of_each_table(
        results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (results / "utility_pretrained.csv").read_bytes()
    assert manage.main(["--results-dir", str(results), "remove", "--model", "ddpm", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "2 rows in image_quality_metrics.csv, 4 rows in utility_pretrained.csv" in out
    for table, left in (("utility_pretrained", 2), ("image_quality_metrics", 1)):
        rows = read_results(table, results)
        assert len(rows) == left and set(rows["model_name"]) == {"sd-finetune"}
    backups = sorted((results / "backups").glob("utility_pretrained.*.csv"))
    assert len(backups) == 1 and backups[0].read_bytes() == before  # the table exactly as it was


def test_extra_info_narrows_the_removal(results: Path) -> None:
    assert manage.main(["--results-dir", str(results), "remove", "--model", "ddpm", "--extra-info", "ema",
                        "--table", "utility_pretrained", "--yes"]) == 0
    rows = read_results("utility_pretrained", results)
    assert sorted(set(zip(rows["model_name"], rows["extra_info"], strict=True))) == [("ddpm", ""),
                                                                                     ("sd-finetune", "")]
    assert len(read_results("image_quality_metrics", results)) == 3  # another table: untouched


def test_a_misspelt_model_names_the_closest_and_changes_nothing(results: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    before = (results / "utility_pretrained.csv").read_bytes()
    assert manage.main(["--results-dir", str(results), "remove", "--model", "sd-finetun", "--yes"]) == 2
    assert "did you mean 'sd-finetune'?" in capsys.readouterr().err
    assert (results / "utility_pretrained.csv").read_bytes() == before
    assert not (results / "backups").exists()


def test_without_yes_it_asks_and_a_no_or_a_pipe_removes_nothing(results: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    before = (results / "utility_pretrained.csv").read_bytes()
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # not a terminal: refuses instead of reading the pipe
    assert manage.main(["--results-dir", str(results), "remove", "--model", "ddpm"]) == 2
    assert "add --yes" in capsys.readouterr().err
    terminal = io.StringIO("n\n")
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stdin", terminal)
    assert manage.main(["--results-dir", str(results), "remove", "--model", "ddpm"]) == 1
    assert (results / "utility_pretrained.csv").read_bytes() == before


def test_remove_rows_matches_keys_as_keys_compare(results: Path) -> None:
    # " ddpm " and "ddpm" are one key; a column that is not a key is refused
    removed, backup = remove_rows("image_quality_metrics", {"model_name": " ddpm ", "extra_info": None},
                                  results_dir=results)
    assert removed == 1 and backup is not None and backup.exists()
    assert remove_rows("image_quality_metrics", {"model_name": "nobody"}, results_dir=results) == (0, None)
    with pytest.raises(ValueError, match=r"fid.*not among its key columns"):
        remove_rows("image_quality_metrics", {"fid": "12.5"}, results_dir=results)
