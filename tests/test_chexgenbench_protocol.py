"""CheXGenBench's image-quality protocol as a preset (``--protocol chexgenbench``): their RAD-DINO input read exactly
as their ``metrics/fid.py`` builds it, their real-prompt deduplication and per-pathology selection, their KID beside
ours, all written as rows of their own. Images: real NIH chest X-rays from ``../shared/data/cxr``; RAD-DINO: a tiny
randomly initialised Dinov2 saved as a local model folder and loaded through transformers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision import transforms

from benchmark.core.results import read_results
from benchmark.data import load_image
from benchmark.fidelity.cli import main
from benchmark.fidelity.features import chexgenbench_pixels, extract_features, load_extractor
from benchmark.fidelity.kid import chexgenbench_kid
from tests.conftest import shared_data

N_REAL = 24


@pytest.fixture(scope="module")
def tiny_raddino(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    folder = tmp_path_factory.mktemp("rad-dino") / "rad-dino"
    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          image_size=32, patch_size=8)
    Dinov2Model(config).eval().save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=[0.5307] * 3,
                      image_std=[0.2583] * 3).save_pretrained(folder)
    return folder


def _nih(n: int) -> pd.DataFrame:
    labels = pd.read_csv(shared_data("cxr", "labels.csv"))
    return labels[labels["source"] == "nih_cxr14"].head(n).reset_index(drop=True)


def test_their_input_is_rebuilt_exactly_from_the_file(tmp_path: Path) -> None:
    rows = _nih(3)
    for path in [shared_data("cxr", p) for p in rows["path"]]:
        theirs = transforms.Compose([transforms.Resize((299, 299)), transforms.ToTensor()])(
            Image.open(path).convert("RGB"))
        theirs = (theirs[None] * 255).to(torch.uint8)[0].numpy()
        np.testing.assert_array_equal(chexgenbench_pixels(load_image(path)), theirs)


def test_their_features_are_rad_dinos_cls_of_that_input_through_its_processor(tiny_raddino: Path,
                                                                               tmp_path: Path) -> None:
    from transformers import AutoImageProcessor, AutoModel

    paths = [shared_data("cxr", p) for p in _nih(4)["path"]]
    extractor = load_extractor("raddino-chexgenbench", str(tiny_raddino), device="cpu")
    ours = extract_features(paths, extractor, cache_dir=tmp_path / "cache").features
    processor, model = AutoImageProcessor.from_pretrained(tiny_raddino), AutoModel.from_pretrained(tiny_raddino)
    batch = torch.stack([torch.from_numpy(chexgenbench_pixels(load_image(p))) for p in paths])
    with torch.no_grad():
        expected = model(**processor(images=batch, return_tensors="pt")).pooler_output.numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)
    assert extractor.name.startswith("raddino-chexgenbench:") and "squashed to 299x299" in extractor.preprocessing
    assert extractor.fingerprint == load_extractor("raddino", str(tiny_raddino), device="cpu").fingerprint


def test_their_kid_takes_the_whole_smaller_set_so_equal_sizes_have_no_spread() -> None:
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(30, 4)), rng.normal(size=(30, 4)) + 0.5
    equal = chexgenbench_kid(real, fake, device="cpu")
    assert equal["chexgenbench_kid_subset_size"] == 30 and equal["chexgenbench_kid_std"] == pytest.approx(0, abs=1e-15)
    unequal = chexgenbench_kid(np.concatenate([real, rng.normal(size=(20, 4))]), fake, device="cpu")
    assert unequal["chexgenbench_kid_subset_size"] == 30 and unequal["chexgenbench_kid_std"] > 0


def _sets(tmp_path: Path) -> tuple[Path, Path]:
    """A test split of NIH images whose prompts repeat (one prompt per finding pattern) and a synthetic set made of
    other NIH images under some of those prompts."""
    rows = _nih(N_REAL + 12)
    real, fake = rows.iloc[:N_REAL], rows.iloc[N_REAL:].reset_index(drop=True)
    prompt = np.where(real["Effusion"] == 1, "chest x-ray with effusion", "chest x-ray, no effusion")
    prompt = [f"{p} {i % 5}" for i, p in enumerate(prompt)]  # 10 distinct prompts over 24 rows at most
    split = pd.DataFrame({"image_path": [str(shared_data("cxr", p)) for p in real["path"]],
                          "patient_id": real["patient_id"].astype(str), "split": "test", "prompt": prompt,
                          "class_label": "", "effusion": real["Effusion"].astype(int).astype(str),
                          "dataset": "nih"})
    split.to_csv(tmp_path / "real.csv", index=False)
    synthetic = tmp_path / "synthetic"
    (synthetic / "images").mkdir(parents=True)
    names = []
    for i, source in enumerate(fake["path"]):
        names.append(f"images/{i:03d}.png")
        (synthetic / names[-1]).write_bytes(shared_data("cxr", source).read_bytes())
    pd.DataFrame({"prompt": [prompt[i % N_REAL] for i in range(len(fake))], "img_savename": names,
                  "source_row": [i % N_REAL for i in range(len(fake))], "seed": 0,
                  "effusion": [split["effusion"].iat[i % N_REAL] for i in range(len(fake))]}).to_csv(
        synthetic / "synthetic.csv", index=False)
    (synthetic / "manifest.json").write_text('{"model": "nih-copies"}')
    return tmp_path / "real.csv", synthetic


def test_the_preset_dedups_real_prompts_selects_by_prompt_and_writes_rows_of_its_own(tiny_raddino: Path,
                                                                                    tmp_path: Path) -> None:
    real_csv, synthetic = _sets(tmp_path)
    results = tmp_path / "results"
    common = ["--real", str(real_csv), "--synthetic", str(synthetic), "--results-dir", str(results), "--cache-dir",
              str(tmp_path / "cache"), "--weights", str(tiny_raddino), "--per-class", "--no-memorisation",
              "--no-diversity", "--jackknife-groups", "5", "--kid-subsets", "10", "--kid-subset-size", "4",
              "--device", "cpu"]
    assert main([*common, "--protocol", "chexgenbench"]) == 0
    table = read_results("image_quality_metrics", results)
    assert set(table["protocol"]) == {"chexgenbench"}
    assert table["feature_extractor"].str.startswith("raddino-chexgenbench:").all()
    rows = table.set_index("class")
    split = pd.read_csv(real_csv, dtype=str)
    unique = split.drop_duplicates("prompt")
    assert int(rows.loc["overall", "n_real"]) == len(unique) < len(split)
    positives = unique[unique["effusion"] == "1"]
    synthetic_csv = pd.read_csv(synthetic / "synthetic.csv", dtype=str)
    assert int(rows.loc["effusion", "n_real"]) == len(positives)
    assert int(rows.loc["effusion", "n_synthetic"]) == int(synthetic_csv["prompt"].isin(positives["prompt"]).sum())
    assert int(rows.loc["overall", "chexgenbench_kid_subset_size"]) == min(len(unique), len(synthetic_csv))
    assert rows.loc["overall", "chexgenbench_kid_mean"] != ""
    # the same images under our protocol: other rows beside them, never replacing them
    assert main([*common, "--features", "raddino"]) == 0
    both = read_results("image_quality_metrics", results)
    assert len(both) == 2 * len(table) and set(both["protocol"]) == {"chexgenbench", "ours"}


def test_the_preset_refuses_other_features_or_k(tmp_path: Path, capsys) -> None:
    real_csv, synthetic = _sets(tmp_path)
    assert main(["--real", str(real_csv), "--synthetic", str(synthetic), "--results-dir", str(tmp_path / "r"),
                 "--protocol", "chexgenbench", "--features", "inception"]) != 0
    assert "--protocol chexgenbench fixes the features" in capsys.readouterr().err
