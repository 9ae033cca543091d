"""MLflow tracking: with MLFLOW_TRACKING_URI set every results row is also an MLflow run (tested against a local
file store); without it nothing changes and mlflow is not imported."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmark.core.results import read_results, upsert_rows
from benchmark.core.tracking import TrackingError, split_row

ROWS = [
    {"model_name": "ddpm-a", "extra_info": "", "classifier": "nih", "image_source": "synthetic", "class": "mass",
     "auroc": 0.81, "auroc_ci_low": 0.74, "auroc_ci_high": 0.88, "n": 120, "leakage": "none"},
    {"model_name": "ddpm-a", "extra_info": "", "classifier": "nih", "image_source": "real", "class": "mass",
     "auroc": 0.93, "auroc_ci_low": 0.89, "auroc_ci_high": 0.97, "n": 120, "leakage": "none"},
]


@pytest.fixture
def file_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    pytest.importorskip("mlflow")
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return uri


def _row_runs(uri: str, experiment: str = "synthcxr-bench"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r}"
    runs = client.search_runs([found.experiment_id])
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags], \
        [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def test_without_tracking_uri_rows_are_written_and_mlflow_is_not_imported(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # any `import mlflow` now raises ImportError
    upsert_rows("utility_pretrained", ROWS, results_dir=tmp_path)
    assert len(read_results("utility_pretrained", tmp_path)) == 2


def test_every_row_becomes_an_mlflow_run_with_its_key_params_and_metrics(tmp_path: Path, file_store: str) -> None:
    upsert_rows("utility_pretrained", ROWS, results_dir=tmp_path / "results", run_id="pretrained-test-1")
    rows, parents = _row_runs(file_store)
    assert len(rows) == 2 and len(parents) == 1
    assert parents[0].data.tags["table"] == "utility_pretrained"
    assert parents[0].data.tags["harness_run_id"] == "pretrained-test-1"
    by_source = {r.data.params["image_source"]: r for r in rows}
    real = by_source["real"].data
    assert real.metrics["auroc"] == pytest.approx(0.93)
    assert real.metrics["auroc_ci_low"] == pytest.approx(0.89) and real.metrics["n"] == 120
    assert real.params["model_name"] == "ddpm-a" and real.params["leakage"] == "none"
    assert real.params["run_id"] == "pretrained-test-1" and real.params["harness_version"]
    assert real.tags["key.class"] == "mass" and real.tags["table"] == "utility_pretrained"
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in rows)


def test_experiment_name_comes_from_the_environment(tmp_path: Path, file_store: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "padchest-ddpm")
    upsert_rows("utility_pretrained", ROWS[:1], results_dir=tmp_path / "results")
    rows, _ = _row_runs(file_store, "padchest-ddpm")
    assert len(rows) == 1


def test_a_tracking_failure_names_the_csv_and_loses_no_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.entities", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(TrackingError, match=r"utility_pretrained\.csv") as error:
        upsert_rows("utility_pretrained", ROWS, results_dir=tmp_path / "results")
    assert "not installed" in str(error.value)
    assert len(read_results("utility_pretrained", tmp_path / "results")) == 2


def test_numbers_are_metrics_and_text_and_keys_are_params() -> None:
    metrics, params = split_row({"class": "mass", "seed": "0", "auroc": "0.8", "auroc_p_vs_real": "",
                                 "notes": "ok", "fid": "nan", "label:x": "1", "git_commit": "1234567"},
                                ["class", "seed"])
    assert metrics == {"auroc": 0.8, "label_x": 1.0}
    assert params == {"class": "mass", "seed": "0", "notes": "ok", "fid": "nan", "git_commit": "1234567"}
