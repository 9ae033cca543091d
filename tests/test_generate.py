"""Generation: tiny pipelines built from config and loaded by path, deterministic per image, distributed, resumable."""

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
import torch
from PIL import Image

from benchmark.data import DataError
from benchmark.data.synthetic import read_synthetic_set
from benchmark.demo.models import build_class_conditional, build_text_to_image
from benchmark.generation.generate import GenerationConfig, generate, image_seed, load_prompts, main, write_index
from tests.conftest import REPO_ROOT, shared_data

CLASSES = ["normal", "cardiomegaly", "soft tissue mass"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    prompts = pd.read_csv(shared_data("chexgenbench", "training_data_20K_prompts.csv.gz"), nrows=400)
    return {"t2i": build_text_to_image(root / "t2i", prompts["annotated_prompt"]),
            "cc": build_class_conditional(root / "cc", num_classes=len(CLASSES), image_size=16)}


@pytest.fixture(scope="module")
def split_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A split CSV of 6 rows (3 test) with class labels and prompts."""
    folder = tmp_path_factory.mktemp("split")
    rows = []
    for i in range(6):
        cls = i % 3
        row = {"image_path": f"images/{i}.png", "patient_id": f"p{i}", "split": "test" if i % 2 else "train",
               "prompt": f"PA chest x-ray showing {CLASSES[cls]}", "class_label": str(cls)}
        row.update({name: "1" if j == cls else "0" for j, name in enumerate(CLASSES)})
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["dataset"] = "demo"
    frame.to_csv(folder / "split.csv", index=False)
    return folder / "split.csv"


def _images(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "images").glob("*.png"))}


def _cli(*args: str, out: Path) -> list[str]:
    return [*args, "--out", str(out)]


def test_image_seed_depends_only_on_base_row_and_index() -> None:
    assert image_seed(0, 5, 1) == image_seed(0, 5, 1)
    seeds = {image_seed(b, r, k) for b in range(3) for r in range(20) for k in range(4)}
    assert len(seeds) == 3 * 20 * 4
    assert all(0 <= s < 2**63 for s in seeds)


def test_class_conditional_model_loads_by_path_and_writes_a_synthetic_set(models, split_csv, tmp_path) -> None:
    out = tmp_path / "set"
    assert main(_cli("--model", str(models["cc"]), "--prompts", str(split_csv), "--split", "test",
                     "--images-per-prompt", "2", "--steps", "4", out=out)) == 0
    synthetic = read_synthetic_set(out, classes=CLASSES)
    assert len(synthetic.frame) == 6
    assert synthetic.frame["source_row"].tolist() == ["1", "1", "3", "3", "5", "5"]
    assert synthetic.frame["class_label"].tolist() == ["1", "1", "0", "0", "2", "2"]
    assert synthetic.labels()[:, 1].tolist() == [1, 1, 0, 0, 0, 0]
    image = Image.open(synthetic.image_paths()[0])
    assert image.mode == "L" and image.size == (16, 16)
    manifest = synthetic.manifest
    assert manifest["kind"] == "class-conditional" and manifest["pipeline_class"] == "ClassConditionalPipeline"
    assert manifest["scheduler"] == "DDPMScheduler" and manifest["steps"] == 4 and manifest["complete"]
    assert manifest["dataset"] == "demo" and manifest["classes"] == CLASSES
    assert manifest["guidance"] == 1.0 and manifest["guidance_mode"] == "none"  # no null class: no guidance
    assert manifest["negative_prompt"] is None and manifest["generated_size"] == [16, 16]
    assert "version_torch" in manifest["package_versions"] and "--split" in manifest["command"]


def test_in_process_generation_gives_the_caller_its_thread_count_back(models, split_csv, tmp_path) -> None:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(_cli("--model", str(models["cc"]), "--prompts", str(split_csv), "--split", "test", "--steps", "2",
                         out=tmp_path / "set")) == 0
        assert torch.get_num_threads() == 2  # generation pins one CPU thread only while it runs
    finally:
        torch.set_num_threads(before)


def test_text_to_image_model_loads_by_path_and_uses_prompts(models, split_csv, tmp_path) -> None:
    out = tmp_path / "t2i"
    assert main(_cli("--model", str(models["t2i"]), "--prompts", str(split_csv), "--steps", "3",
                     "--batch-size", "4", "--guidance", "3.0", "--negative-prompt", "lateral view", out=out)) == 0
    synthetic = read_synthetic_set(out)
    assert len(synthetic.frame) == 6
    assert synthetic.frame["prompt"].iloc[0] == "PA chest x-ray showing normal"
    assert synthetic.manifest["pipeline_class"] == "StableDiffusionPipeline"
    assert synthetic.manifest["guidance"] == 3.0
    pixels = [np.asarray(Image.open(p)) for p in synthetic.image_paths()]
    assert pixels[0].shape == (32, 32) and not np.array_equal(pixels[0], pixels[1])


def test_scheduler_override_is_used_and_recorded(models, split_csv, tmp_path) -> None:
    out = tmp_path / "ddim"
    assert main(_cli("--model", str(models["cc"]), "--prompts", str(split_csv), "--max-prompts", "2", "--steps", "3",
                     "--scheduler", "DDIMScheduler", out=out)) == 0
    assert read_synthetic_set(out).manifest["scheduler"] == "DDIMScheduler"


def test_batch_size_does_not_change_the_images(models, split_csv, tmp_path) -> None:
    outs = []
    for batch_size in (1, 4):
        out = tmp_path / f"b{batch_size}"
        assert main(_cli("--model", str(models["cc"]), "--prompts", str(split_csv), "--steps", "4",
                         "--images-per-prompt", "2", "--batch-size", str(batch_size), out=out)) == 0
        outs.append({n: np.asarray(Image.open(out / "images" / n), dtype=int) for n in _images(out)})
    assert outs[0].keys() == outs[1].keys()
    assert max(np.abs(outs[0][n] - outs[1][n]).max() for n in outs[0]) <= 1  # rounding at most


def test_one_and_two_processes_give_byte_identical_sets(models, split_csv, tmp_path) -> None:
    sets = []
    for processes in ("1", "2"):
        out = tmp_path / f"p{processes}"
        result = subprocess.run(
            [str(REPO_ROOT / "scripts" / "generate.sh"), "--num-processes", processes, "--model", str(models["cc"]),
             "--prompts", str(split_csv), "--steps", "4", "--images-per-prompt", "3", "--batch-size", "2",
             "--out", str(out)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        sets.append(out)
    first, second = (_images(s) for s in sets)
    assert len(first) == 18 and first == second
    assert (sets[0] / "synthetic.csv").read_text() == (sets[1] / "synthetic.csv").read_text()
    assert json.loads((sets[1] / "manifest.json").read_text())["num_processes"] == 2
    assert len(list((sets[1] / "parts").glob("rank-*.jsonl"))) == 2


@pytest.mark.parametrize("processes", ["1", "2"])
def test_generate_sh_shows_a_refused_row_without_the_launchers_traceback(processes, models, split_csv,
                                                                          tmp_path) -> None:
    prompts = pd.read_csv(split_csv, dtype=str)
    prompts.loc[3, "class_label"] = "7"  # the UNet has classes 0..2
    prompts.to_csv(tmp_path / "prompts.csv", index=False)
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "generate.sh"), "--num-processes", processes, "--model", str(models["cc"]),
         "--prompts", str(tmp_path / "prompts.csv"), "--steps", "2", "--out",
         str(tmp_path / "set")], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "prompts.csv: row 4 (line 5): column 'class_label' has '7'" in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "CalledProcessError" not in result.stderr, result.stderr[-3000:]
    assert not list((tmp_path / "set").glob("images/*.png"))


def test_killed_run_restarted_gives_the_identical_set(models, split_csv, tmp_path) -> None:
    command = [sys.executable, "-m", "benchmark.generation.generate", "--model", str(models["cc"]), "--prompts",
               str(split_csv), "--steps", "40", "--images-per-prompt", "2", "--batch-size", "1"]
    reference = tmp_path / "reference"
    subprocess.run([*command, "--out", str(reference)], check=True, capture_output=True, timeout=300, cwd=REPO_ROOT)
    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=REPO_ROOT, start_new_session=True)
    deadline = time.time() + 240
    while len(list((killed / "images").glob("*.png"))) < 3 and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    partial = len(list((killed / "images").glob("*.png")))
    assert 3 <= partial < 12
    assert not (killed / "synthetic.csv").exists()
    assert not write_index(killed).empty  # rebuildable after the crash, and says it is incomplete
    assert json.loads((killed / "manifest.json").read_text())["complete"] is False
    subprocess.run([*command, "--out", str(killed)], check=True, capture_output=True, timeout=300, cwd=REPO_ROOT)
    assert _images(killed) == _images(reference)
    assert (killed / "synthetic.csv").read_text() == (reference / "synthetic.csv").read_text()
    assert not list((killed / "images").glob(".*.tmp"))


def test_long_prompts_are_counted_and_reported(models, tmp_path) -> None:
    prompts = pd.read_csv(shared_data("chexgenbench", "training_data_20K_prompts.csv.gz"), nrows=30)
    prompts.to_csv(tmp_path / "mimic.csv", index=False)
    out = tmp_path / "long"
    assert main(_cli("--model", str(models["t2i"]), "--prompts", str(tmp_path / "mimic.csv"), "--steps", "1",
                     "--max-prompts", "30", out=out)) == 0
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(models["t2i"] / "tokenizer")
    lengths = [len(tokenizer(p, truncation=False)["input_ids"]) for p in prompts["annotated_prompt"]]
    expected = sum(n > 77 for n in lengths)
    report = json.loads((out / "manifest.json").read_text())["long_prompts"]
    assert 0 < expected < 30
    assert report["token_limit"] == 77 and report["n_over_limit"] == expected and report["n_prompts"] == 30
    synthetic = pd.read_csv(out / "synthetic.csv", dtype=str)
    assert (synthetic["prompt_truncated"] == "1").sum() == expected
    assert synthetic["prompt_tokens"].astype(int).tolist() == lengths
    assert "chexpert_labels" in synthetic.columns  # labels of the source row travel with the image
    with pytest.raises(DataError, match="exceed the tokenizer limit of 77"):
        generate(GenerationConfig(model=str(models["t2i"]), prompts=str(tmp_path / "mimic.csv"),
                                  out=str(tmp_path / "strict"), steps=1, long_prompts="error"))


def test_unknown_model_path_is_a_clear_error(split_csv, tmp_path, capsys) -> None:
    assert main(_cli("--model", str(tmp_path / "no-such-model"), "--prompts", str(split_csv), out=tmp_path / "o")) == 2
    assert "no-such-model' not found" in capsys.readouterr().err


def test_folder_that_is_not_a_pipeline_is_a_clear_error(split_csv, tmp_path, capsys) -> None:
    (tmp_path / "weights").mkdir()
    assert main(_cli("--model", str(tmp_path / "weights"), "--prompts", str(split_csv), out=tmp_path / "o")) == 2
    assert "not a diffusers pipeline folder (no model_index.json)" in capsys.readouterr().err


def test_class_conditional_model_needs_class_labels(models, tmp_path, capsys) -> None:
    pd.DataFrame({"prompt": ["a", "b"]}).to_csv(tmp_path / "p.csv", index=False)
    assert main(_cli("--model", str(models["cc"]), "--prompts", str(tmp_path / "p.csv"), out=tmp_path / "o")) == 2
    assert "class-conditional but the CSV has no 'class_label' column" in capsys.readouterr().err


def test_half_precision_on_cpu_is_refused(models, split_csv, tmp_path, capsys) -> None:
    assert main(_cli("--model", str(models["cc"]), "--prompts", str(split_csv), "--dtype", "fp16",
                     out=tmp_path / "o")) == 2
    assert "--dtype fp16 needs a GPU" in capsys.readouterr().err


def test_split_filter_on_a_csv_without_splits_is_refused(tmp_path) -> None:
    pd.DataFrame({"annotated_prompt": ["a"]}).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(DataError, match="--split test given but the CSV has no 'split' column"):
        load_prompts(tmp_path / "p.csv", split="test")
    table = load_prompts(tmp_path / "p.csv")
    assert table.frame["prompt"].tolist() == ["a"]


def test_dedupe_and_max_prompts(tmp_path) -> None:
    pd.DataFrame({"prompt": ["a", "b", "a", "c", "d"]}).to_csv(tmp_path / "p.csv", index=False)
    table = load_prompts(tmp_path / "p.csv", dedupe=True, max_prompts=3)
    assert table.frame["prompt"].tolist() == ["a", "b", "c"]
    assert table.frame["source_row"].tolist() == [0, 1, 3] and table.n_duplicates_dropped == 1
    assert load_prompts(tmp_path / "p.csv").frame["prompt"].tolist() == ["a", "b", "a", "c", "d"]


def test_restart_with_other_settings_is_refused(models, split_csv, tmp_path, capsys) -> None:
    out = tmp_path / "set"
    base = ["--model", str(models["cc"]), "--prompts", str(split_csv), "--max-prompts", "1"]
    assert main(_cli(*base, "--steps", "2", out=out)) == 0
    assert main(_cli(*base, "--steps", "3", out=out)) == 2
    assert "holds a different generation run (steps: 2 there, 3 now)" in capsys.readouterr().err


def test_lora_weights_are_applied_and_recorded(models, split_csv, tmp_path) -> None:
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipeline = StableDiffusionPipeline.from_pretrained(models["t2i"])
    pipeline.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    torch.manual_seed(0)
    for name, parameter in pipeline.unet.named_parameters():
        if "lora_B" in name:  # peft starts B at zero (no effect); make the adapter change the images
            parameter.data.normal_(0, 0.5)
    StableDiffusionPipeline.save_lora_weights(tmp_path / "adapter",
                                              unet_lora_layers=get_peft_model_state_dict(pipeline.unet))
    base = ["--model", str(models["t2i"]), "--prompts", str(split_csv), "--max-prompts", "2", "--steps", "2"]
    assert main(_cli(*base, out=tmp_path / "plain")) == 0
    assert main(_cli(*base, "--lora", str(tmp_path / "adapter"), out=tmp_path / "lora")) == 0
    assert _images(tmp_path / "plain").keys() == _images(tmp_path / "lora").keys()
    assert _images(tmp_path / "plain") != _images(tmp_path / "lora")
    assert read_synthetic_set(tmp_path / "lora").manifest["lora"] == str(tmp_path / "adapter")


@pytest.mark.parametrize(("flag", "value", "message"), [("--steps", "-2", "--steps -2: must be at least 1"),
                                                         ("--steps", "0", "--steps 0: must be at least 1"),
                                                         ("--height", "4", "--height 4: must be at least 8"),
                                                         ("--batch-size", "0", "--batch-size 0: must be at least 1")])
def test_numeric_options_out_of_range_stop_before_the_model_loads(models, split_csv, tmp_path, capsys, flag, value,
                                                                   message) -> None:
    out = tmp_path / "set"
    assert main(_cli("--model", str(models["t2i"]), "--prompts", str(split_csv), flag, value, out=out)) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_a_size_the_pipeline_refuses_is_a_clear_error_and_the_corrected_rerun_goes_ahead(models, split_csv, tmp_path,
                                                                                          capsys) -> None:
    out = tmp_path / "set"
    base = ["--model", str(models["t2i"]), "--prompts", str(split_csv), "--max-prompts", "1", "--steps", "2"]
    assert main(_cli(*base, "--height", "30", "--width", "30", out=out)) == 2
    err = capsys.readouterr().err
    assert "StableDiffusionPipeline refused the settings (--height 30" in err and "Traceback" not in err
    assert main(_cli(*base, out=out)) == 0  # the failed start made no image, so it does not block this run
    assert read_synthetic_set(out).manifest["complete"]


def test_resume_makes_empty_or_cut_off_images_again_and_says_so(models, split_csv, tmp_path, capsys) -> None:
    out = tmp_path / "set"
    base = ["--model", str(models["cc"]), "--prompts", str(split_csv), "--split", "test", "--steps", "2"]
    assert main(_cli(*base, out=out)) == 0
    reference = _images(out)
    names = sorted(reference)
    (out / "images" / names[0]).write_bytes(b"")
    (out / "images" / names[1]).write_bytes(reference[names[1]][:40])
    write_index(out)
    assert not read_synthetic_set(out).manifest["complete"]  # a broken file is not a finished image
    capsys.readouterr()
    assert main(_cli(*base, out=out)) == 0
    assert "2 existing image(s) did not decode" in capsys.readouterr().err
    assert _images(out) == reference and read_synthetic_set(out).manifest["complete"]
