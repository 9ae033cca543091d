"""``--settings chexgenbench``: CheXGenBench's four downstream settings over the 14 CheXpert labels of their own
prompts CSV (``../shared/data/chexgenbench``), planned with their sizes and trained end to end on a small slice."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.data import read_split_csv
from benchmark.data.make_splits import main as make_splits_main
from benchmark.data.splits.chexgenbench import CHEXPERT_LABELS
from benchmark.data.synthetic import write_synthetic_set
from benchmark.utility.retrained import (
    RetrainedConfig,
    build_parser,
    make_pools,
    parse_settings,
    plan_units,
    retrained_config_from_args,
    run_retrained_stage,
)
from tests.conftest import shared_data

SIZE = 32


@pytest.fixture(scope="module")
def anchor(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The first 300 rows of CheXGenBench's prompts CSV as a split (their label handling), with noise PNGs as the
    'real' images, and a synthetic set of one image per train prompt (labels copied from the prompt's row)."""
    root = tmp_path_factory.mktemp("chexgenbench_preset")
    prompts = pd.read_csv(shared_data("chexgenbench", "training_data_20K_prompts.csv.gz"), nrows=300)
    rng = np.random.default_rng(0)
    from PIL import Image

    for path in prompts["path"]:
        (root / "mimic" / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (SIZE + 8, SIZE), dtype=np.uint8)).save(
            (root / "mimic" / path).with_suffix(".png"))
    prompts["path"] = prompts["path"].str.replace(".jpg", ".png", regex=False)
    with gzip.open(root / "prompts_png.csv.gz", "wt") as handle:
        prompts.to_csv(handle, index=False)
    assert make_splits_main(["chexgenbench", "--csv", str(root / "prompts_png.csv.gz"), "--out",
                             str(root / "split.csv"), "--image-root", str(root / "mimic"), "--uncertain", "zeros",
                             "--unmentioned", "negative"]) == 0
    real = read_split_csv(root / "split.csv")
    train = real.frame[real.frame["split"] == "train"]
    rows = train[list(real.classes)].copy()
    rows.insert(0, "prompt", train["prompt"].to_numpy())
    rows.insert(1, "source_row", np.flatnonzero(real.frame["split"].to_numpy() == "train"))
    rows.insert(2, "seed", 0)
    images = rng.integers(0, 256, (len(rows), SIZE, SIZE), dtype=np.uint8)
    synthetic = write_synthetic_set(root / "synthetic", images, rows,
                                    {"model_name": "noise", "classes": list(real.classes)})
    return {"root": root, "real": real, "synthetic": synthetic, "n_train": len(train)}


def test_the_preset_is_their_four_settings_with_their_sizes(anchor: dict) -> None:
    specs = parse_settings("chexgenbench")
    assert [s.label for s in specs] == ["real:all", "synthetic:all", "mixed:all@0.5", "real+synthetic:all+all"]
    args = build_parser().parse_args(["--settings", "chexgenbench"])
    assert retrained_config_from_args(args).settings == ("chexgenbench",)
    real, synthetic, n = anchor["real"], anchor["synthetic"], anchor["n_train"]
    assert list(real.classes) == list(CHEXPERT_LABELS)  # the 14 CheXpert labels of their CSV
    assert not np.isnan(real.labels()).any()  # --uncertain zeros --unmentioned negative: every label 0 or 1
    units = plan_units(specs, (0,), make_pools(real, synthetic, real.classes))
    sizes = {u.spec.label: (u.n_real, u.n_synthetic) for u in units}
    assert sizes == {"real:all": (n, 0), "synthetic:all": (0, n), "mixed:all@0.5": (n - round(n / 2), round(n / 2)),
                     "real+synthetic:all+all": (n, n)}
    mixed = next(u for u in units if u.spec.kind == "mixed").training
    assert len(np.intersect1d(mixed.real, mixed.replaced)) == 0  # a replaced row's real image is left out


def test_the_preset_gives_a_table_over_the_14_labels(anchor: dict) -> None:
    config = RetrainedConfig(settings=("chexgenbench",), seeds=(0,), epochs=1, patience=1, image_size=SIZE,
                             batch_size=32, n_resamples=100, progress=False, cpu_threads=1)
    outcome = run_retrained_stage(anchor["real"], anchor["synthetic"], config, model_name="noise",
                                  results_dir=anchor["root"] / "results")
    summary = outcome.summary
    assert set(summary["setting_spec"]) == {"real:all", "synthetic:all", "mixed:all@0.5", "real+synthetic:all+all"}
    assert set(summary["class"]) == set(CHEXPERT_LABELS)
    assert (summary.groupby("setting_spec")["class"].nunique() == 14).all()
    assert Path(outcome.run_folder / "summary.txt").is_file()
