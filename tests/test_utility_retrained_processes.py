"""Retrained-classifier utility across processes: a 2-process DDP run on CPU (torchrun) and a sweep killed with
SIGKILL mid-way that the next run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import benchmark.utility.retrained.execution as execution
from benchmark.core.results import read_results
from benchmark.data import read_split_csv
from benchmark.demo.phantoms import write_demo_dataset
from benchmark.demo.run import DemoConfig, label_blind_set
from benchmark.models.classifiers import load_checkpoint
from benchmark.models.training import load_tensors
from benchmark.utility.retrained.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
COMMON = ["--image-size", str(SIZE), "--train-batch-size", "16", "--lr", "3e-3", "--no-augment", "--seeds", "0",
          "--n-resamples", "1000", "--quiet"]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 160-patient, 32 px phantom split and a label-blind synthetic set made from its train rows."""
    root = tmp_path_factory.mktemp("retrained_processes")
    write_demo_dataset(root / "real", n_patients=160, images_per_patient=2, size=SIZE, seed=1)
    real = read_split_csv(root / "real" / "split.csv")
    rows = real.frame.copy()
    rows["source_row"] = np.arange(len(rows))
    rows["finding"] = [real.classes[int(c)] for c in rows["class_label"]]
    label_blind_set(root / "blind", rows[rows["split"] == "train"], real.classes, DemoConfig(image_size=SIZE))
    return {"split": root / "real" / "split.csv", "synthetic": root / "blind"}


def _env(threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def test_two_process_cpu_run_trains_one_valid_model_and_writes_once(small: dict[str, Path], tmp_path: Path) -> None:
    results = tmp_path / "results"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "benchmark.utility.retrained", "--real", str(small["split"]), "--synthetic",
               str(small["synthetic"]), "--model-name", "ddp", "--settings", "real", "--epochs", "6",
               "--results-dir", str(results), *COMMON, "--train-batch-size", "8"]  # per process: 16 in all
    done = subprocess.run(command, cwd=REPO_ROOT, env=_env(threads=1), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("== cardiomegaly (real test images") == 1  # only the main process prints
    rows = read_results("utility_retrained", results)
    real = read_split_csv(small["split"])
    assert len(rows) == 2 * len(real.classes) and set(rows["seed"]) == {"0", "mean"}  # written once
    (unit,) = (results / "runs").glob("*/units/real_*_seed0")
    marker = json.loads((unit / "done.json").read_text())
    assert marker["info"]["num_processes"] == 2
    # Both processes selected the same model (the stage compares checksums); the saved one reproduces the
    # predictions and is a working classifier on held-out real patients.
    classifier = load_checkpoint(unit / "checkpoint")
    stored = pd.read_csv(unit / "predictions_test.csv")
    scores = classifier.predict(load_tensors(stored["image"].tolist(), SIZE)).numpy()
    np.testing.assert_allclose(scores, stored[[f"score:{c}" for c in real.classes]].to_numpy(), atol=1e-5)
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    # Measured over training seeds 0, 1, 2 (this test runs seed 0): cardiomegaly 0.947-0.953 (with 3 epochs it was
    # 0.43-0.94, so the test trains 6).
    assert roc_auc_score(stored["label:cardiomegaly"], stored["score:cardiomegaly"]) > 0.8
    history = json.loads((unit / "history.json").read_text())["histories"]["all"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(h["val_mean_auroc"]) for h in history)
    # The one-cycle schedule spans all 6 epochs with 2 processes too (not run through by the end of epoch 3).
    assert history[2]["lr"] > 0.1 * 3e-3 and history[5]["lr"] < 1e-5


def test_a_sweep_killed_mid_way_resumes_with_the_units_not_done(small: dict[str, Path], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    arguments = ["--real", str(small["split"]), "--synthetic", str(small["synthetic"]), "--model-name", "killed",
                 "--settings", "real:100,synthetic:100", "--epochs", "2", "--results-dir", str(results), *COMMON]
    process = subprocess.Popen([sys.executable, "-m", "benchmark.utility.retrained", *arguments], cwd=REPO_ROOT,
                               env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not list(results.glob("runs/*/units/real_r100_s0_seed0/done.json")):
            assert process.poll() is None, f"the sweep ended before it could be killed: {process.stderr.read()}"
            assert time.monotonic() < deadline, "the first unit never finished"
            time.sleep(0.2)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    (run,) = (results / "runs").iterdir()
    assert not (run / "units" / "synthetic_r0_s100_seed0" / "done.json").exists()

    original, calls = execution._train_unit, []
    monkeypatch.setattr(execution, "_train_unit", lambda unit, *a, **k: calls.append(unit.id) or original(unit, *a,
                                                                                                            **k))
    assert main(arguments) == 0
    assert calls == ["synthetic_r0_s100_seed0"]
    rows = read_results("utility_retrained", results)
    assert set(rows["run_id"]) == {run.name} and set(rows["setting"]) == {"real", "synthetic"}
    assert json.loads((run / "sweep.json").read_text())["status"] == "complete"
