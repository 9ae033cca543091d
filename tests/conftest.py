"""Shared fixtures: the real data in ../shared/data and small split CSVs with real image files on disk."""

from __future__ import annotations

import os
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
