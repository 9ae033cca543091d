"""Shared fixtures: the real data in ../shared/data and small split CSVs with real image files on disk."""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; skipped outside CI when the folder is absent, a failure in CI."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI must have ../shared/data beside the checkout")
        pytest.skip(f"{path} is not available on this machine")
    return path


def write_png(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    """Save ``pixels`` as a PNG (mode inferred from dtype / channels unless given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode=mode).save(path) if mode else Image.fromarray(pixels).save(path)
    return path


def assert_rows_close(ours: pd.DataFrame, theirs: pd.DataFrame, *, rtol: float = 0.0, atol: float = 1e-9) -> None:
    """Two result tables (as read back, text cells) are equal: every cell that parses as a number within
    ``atol + rtol * |value|``, every other cell exactly; same columns, same order, same missing cells."""
    assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs)
    for column in ours.columns:
        a, b = ours[column].reset_index(drop=True), theirs[column].reset_index(drop=True)
        na, nb = pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce")
        numeric = na.notna() & nb.notna()
        assert (a[~numeric].fillna("<missing>") == b[~numeric].fillna("<missing>")).all(), column
        np.testing.assert_allclose(na[numeric].to_numpy(float), nb[numeric].to_numpy(float), rtol=rtol, atol=atol,
                                   err_msg=column)


#: the longest test files (minutes each on 2 cores), longest first: ``pytest -n N --dist loadfile`` hands files to
#: workers in collection order, so starting with these keeps the workers busy to the end (the demo first: the report
#: and retrained tests wait for its run)
LONGEST_FILES = ("test_demo.py", "test_utility_retrained.py", "test_run_all.py", "test_generate.py",
                 "test_utility_retrained_processes.py", "test_generate_families.py", "test_stats_calibration.py")
#: files that read the demo run of another file (``demo_results``): last, so no worker waits for the demo to finish
AFTER_THE_DEMO = ("test_report.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the files of :data:`LONGEST_FILES` first, in that order, those of :data:`AFTER_THE_DEMO` last, the
    others between them as collected."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    rank.update({name: len(LONGEST_FILES) + 1 for name in AFTER_THE_DEMO})
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FILES)))


def shared_tmp(tmp_path_factory: pytest.TempPathFactory, worker_id: str, name: str) -> Path:
    """A folder for the whole test run: the session's own under one process, the same one for every xdist worker
    (beside their temporary roots) under ``pytest -n N``."""
    if worker_id == "master":
        return tmp_path_factory.mktemp(name)
    folder = tmp_path_factory.getbasetemp().parent / name
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session", autouse=True)
def session_assets(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """One demo-classifier cache for the whole test run (``$SYNTHCXR_ASSETS``, inherited by subprocesses): the demo
    classifier is trained once per run, from scratch, and never read from the checkout's ``assets/cache``. Under
    xdist the workers share it (it is trained under a file lock: :func:`benchmark.demo.run.demo_classifier`)."""
    folder = (Path(os.environ["SYNTHCXR_TEST_ASSETS"]) if os.environ.get("SYNTHCXR_TEST_ASSETS")
              else shared_tmp(tmp_path_factory, worker_id, "shared_assets"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNTHCXR_ASSETS", str(folder))
        yield folder


@dataclass
class DemoRun:
    """What the main job printed and wrote when run with nothing configured (the built-in demo)."""

    status: int
    output: str
    demo_dir: Path
    results_dir: Path


@pytest.fixture(scope="session")
def demo_results(tmp_path_factory: pytest.TempPathFactory, session_assets: Path, worker_id: str) -> DemoRun:
    """The demo run once per test run: ``utility_metrics`` with no split, no set and no stage (every stage). Under
    xdist the first worker that needs it runs it; the others wait on a file lock and read what it printed."""
    import filelock

    from benchmark.utility.cli import main

    root = shared_tmp(tmp_path_factory, worker_id, "demo_run")
    record = root / "demo_run.json"
    with filelock.FileLock(f"{root}.lock"):
        if not record.is_file():
            output = io.StringIO()
            with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(output):
                for variable in ("REAL_CSV", "SYNTHETIC_DIR", "MODEL_NAME", "RESULTS_DIR", "EXTRA_INFO", "CLASSES"):
                    patch.delenv(variable, raising=False)
                status = main(["--demo-dir", str(root / "demo"), "--results-dir", str(root / "results"),
                               "--num-workers", "0"])
            record.write_text(json.dumps({"status": status, "output": output.getvalue()}))
    done = json.loads(record.read_text())
    return DemoRun(done["status"], done["output"], root / "demo", root / "results")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module: on a shared 2-core machine OpenMP spin-waiting makes 2 threads up to
    50x slower (use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def split_dir(tmp_path: Path) -> Path:
    """A folder with 6 greyscale PNGs of 3 patients and a valid split.csv (classes: mass, cardiomegaly)."""
    rng = np.random.default_rng(0)
    rows = []
    for i, (patient, split) in enumerate([("p1", "train"), ("p1", "train"), ("p2", "val"), ("p2", "val"),
                                          ("p3", "test"), ("p3", "test")]):
        write_png(tmp_path / "images" / f"img{i}.png", rng.integers(0, 256, (40, 32), dtype=np.uint8))
        rows.append({"image_path": f"images/img{i}.png", "patient_id": patient, "split": split,
                     "prompt": "PA chest x-ray", "class_label": str(i % 2), "mass": str(i % 2),
                     "cardiomegaly": "" if i == 3 else "0"})
    pd.DataFrame(rows).to_csv(tmp_path / "split.csv", index=False)
    return tmp_path
