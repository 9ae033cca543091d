"""Generation across pipeline families: tiny offline builds of each, loaded by path and run through ``main``.

Each family generates (exit 0), records where each text encoder cuts a prompt (two prompts differing only past the
cut give identical images and are marked truncated), and every option it records changes the pixels; options a
pipeline would ignore are refused before the first image.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.demo import tiny_pipelines
from benchmark.generation.generate import main

WORDS = ["clear", "lungs", "normal", "heart", "size", "no", "focal", "consolidation"]
TAILS = ("pleural effusion", "small pneumothorax")
VOCABULARY = [" ".join(WORDS), *TAILS, "lateral view", "cardiomegaly", "portable film"]

# family -> (pipeline class, the limit of each text encoder as the pipeline applies it)
FAMILIES: dict[str, tuple[str, dict[str, int]]] = {
    "sd1": ("StableDiffusionPipeline", {"tokenizer": 77}),
    "sd2": ("StableDiffusionPipeline", {"tokenizer": 77}),
    "radedit": ("StableDiffusionPipeline", {"tokenizer": 64}),
    "sdxl": ("StableDiffusionXLPipeline", {"tokenizer": 77, "tokenizer_2": 77}),
    "sd3": ("StableDiffusion3Pipeline", {"tokenizer": 16, "tokenizer_2": 16, "tokenizer_3": 256}),
    "flux": ("FluxPipeline", {"tokenizer": 16, "tokenizer_2": 512}),
    "pixart-alpha": ("PixArtAlphaPipeline", {"tokenizer": 120}),
    "pixart-sigma": ("PixArtSigmaPipeline", {"tokenizer": 300}),
    "sana": ("SanaPipeline", {"tokenizer": 300}),  # plus the complex human instruction's tokens - 2
    "lumina2": ("Lumina2Pipeline", {"tokenizer": 256}),  # the system prompt shares these
}
TAKES_MAX_SEQUENCE_LENGTH = ("sd3", "flux", "pixart-alpha", "pixart-sigma", "sana", "lumina2")
CFG_FAMILIES = tuple(f for f in FAMILIES if f != "flux")
SIZE = ("--height", "--width")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tiny family, built on first use and saved once for the module."""
    root = tmp_path_factory.mktemp("families")

    class Lazy(dict):
        def __missing__(self, name: str) -> Path:
            if name == "flux-schnell":
                folder = tiny_pipelines.build_flux(root / name, VOCABULARY, guidance_embeds=False)
            elif name in ("ddpm", "ddim"):
                folder = getattr(tiny_pipelines, f"build_{name}")(root / name)
            elif name == "cc-guided":
                folder = tiny_pipelines.build_class_conditional_guided(root / name, num_classes=3)
            else:
                folder = tiny_pipelines.BUILDERS[name](root / name, VOCABULARY)
            self[name] = folder
            return folder

    return Lazy()


def _generate(model: Path, folder: Path, prompts: list[str], *args: str, **columns: list[str]) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "prompts.csv"
    pd.DataFrame({"prompt": prompts, **columns}).to_csv(csv, index=False)
    return main(["--model", str(model), "--prompts", str(csv), "--out", str(folder / "set"), "--steps", "2",
                 SIZE[0], "32", SIZE[1], "32", *args])


def _pixels(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted((folder / "set" / "images").glob("*.png"))]


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "set" / "manifest.json").read_text())


def _synthetic(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "set" / "synthetic.csv", dtype=str, keep_default_na=False)


def _long(n_words: int, tail: str = TAILS[0]) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n_words)) + " " + tail


def _past_the_cut(family: str) -> int:
    """Words that certainly fill the furthest-reading encoder (Sana/Lumina2 count characters, the others words)."""
    return max(FAMILIES[family][1].values()) + 10


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_generates_and_records_truncation_where_the_pipeline_cuts(family, models, tmp_path) -> None:
    model = models[family]
    words = _past_the_cut(family)
    assert _generate(model, tmp_path / "a", [_long(words, TAILS[0])]) == 0
    assert _generate(model, tmp_path / "b", [_long(words, TAILS[1])]) == 0
    assert _generate(model, tmp_path / "c", ["portable film " + _long(words, TAILS[0])]) == 0
    manifest = _manifest(tmp_path / "a")
    pipeline_class, limits = FAMILIES[family]
    assert manifest["pipeline_class"] == pipeline_class and manifest["complete"]
    encoders = manifest["long_prompts"]["encoders"]
    assert sorted(encoders) == sorted(limits)
    for name, limit in limits.items():
        if family == "sana":
            assert encoders[name]["limit"] == limit + encoders[name]["prefix_tokens"] - 2
        else:
            assert encoders[name]["limit"] == limit
        assert encoders[name]["n_over_limit"] == 1
    if family in ("sana", "lumina2"):  # Gemma-style: the tokenizer itself sets no limit
        from transformers import AutoTokenizer

        assert AutoTokenizer.from_pretrained(model / "tokenizer").model_max_length >= 10**29
        assert encoders["tokenizer"]["prefix_tokens"] > 0  # instruction / system prompt share the budget
    rows = _synthetic(tmp_path / "a")
    assert rows["prompt_truncated"].tolist() == ["1"]
    assert int(rows["prompt_tokens"].iat[0]) > max(e["limit"] for e in encoders.values())
    assert _pixels(tmp_path / "a")[0].tobytes() == _pixels(tmp_path / "b")[0].tobytes()  # differs past the cut
    assert _pixels(tmp_path / "a")[0].tobytes() != _pixels(tmp_path / "c")[0].tobytes()  # differs before it
    signature = inspect.signature(getattr(__import__("diffusers"), pipeline_class).__call__).parameters
    if family != "flux":
        assert manifest["guidance"] == signature["guidance_scale"].default  # omitted: the pipeline's own default


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_t5_reads_past_clip_so_the_prompt_is_not_truncated(family, models, tmp_path) -> None:
    model = models[family]
    assert _generate(model, tmp_path / "a", [_long(30, TAILS[0])]) == 0
    assert _generate(model, tmp_path / "b", [_long(30, TAILS[1])]) == 0
    rows = _synthetic(tmp_path / "a")
    t5 = "tokenizer_3" if family == "sd3" else "tokenizer_2"
    assert rows["prompt_truncated_tokenizer"].tolist() == ["1"]  # CLIP cuts at 16
    assert rows[f"prompt_truncated_{t5}"].tolist() == ["0"] and rows["prompt_truncated"].tolist() == ["0"]
    assert _manifest(tmp_path / "a")["long_prompts"]["n_over_limit"] == 0
    assert _pixels(tmp_path / "a")[0].tobytes() != _pixels(tmp_path / "b")[0].tobytes()  # T5 sees the tail


@pytest.mark.parametrize("family", TAKES_MAX_SEQUENCE_LENGTH)
def test_max_sequence_length_is_applied_and_recorded(family, models, tmp_path) -> None:
    model = models[family]
    length = {"lumina2": 200, "sana": 20}.get(family, 8)  # Lumina2's budget includes its system prompt
    prompt = _long(_past_the_cut(family))
    assert _generate(model, tmp_path / "default", [prompt]) == 0
    assert _generate(model, tmp_path / "short", [prompt], "--max-sequence-length", str(length)) == 0
    default, short = _manifest(tmp_path / "default"), _manifest(tmp_path / "short")
    assert default["max_sequence_length"] == max(FAMILIES[family][1].values())
    assert short["max_sequence_length"] == length
    t5 = {"sd3": "tokenizer_3", "flux": "tokenizer_2"}.get(family, "tokenizer")
    encoder = short["long_prompts"]["encoders"][t5]
    assert encoder["limit"] == (length + encoder["prefix_tokens"] - 2 if family == "sana" else length)
    assert _pixels(tmp_path / "default")[0].tobytes() != _pixels(tmp_path / "short")[0].tobytes()


def test_max_sequence_length_is_refused_where_the_pipeline_takes_none(models, tmp_path, capsys) -> None:
    assert _generate(models["sd1"], tmp_path, ["a chest"], "--max-sequence-length", "20") == 2
    assert "--max-sequence-length: StableDiffusionPipeline (text-to-image) takes no max_sequence_length" in \
        capsys.readouterr().err
    assert not (tmp_path / "set" / "images").exists()


@pytest.mark.parametrize("family", CFG_FAMILIES)
def test_guidance_and_negative_prompt_change_the_pixels(family, models, tmp_path) -> None:
    model = models[family]
    assert _generate(model, tmp_path / "g2", ["normal heart"], "--guidance", "2") == 0
    assert _generate(model, tmp_path / "g6", ["normal heart"], "--guidance", "6") == 0
    assert _generate(model, tmp_path / "neg", ["normal heart"], "--guidance", "6",
                     "--negative-prompt", "lateral view") == 0
    assert _manifest(tmp_path / "g2")["guidance"] == 2.0 and _manifest(tmp_path / "g6")["negative_prompt"] is None
    assert _manifest(tmp_path / "neg")["negative_prompt"] == "lateral view"
    g2, g6, neg = (_pixels(tmp_path / k)[0].tobytes() for k in ("g2", "g6", "neg"))
    assert g2 != g6 and g6 != neg


@pytest.mark.parametrize("family", ["sd1", "pixart-sigma", "sana"])
def test_negative_prompt_without_guidance_is_refused(family, models, tmp_path, capsys) -> None:
    assert _generate(models[family], tmp_path, ["normal heart"], "--guidance", "1", "--negative-prompt", "x") == 2
    assert "uses the negative prompt only with classifier-free guidance: give --guidance above 1" in \
        capsys.readouterr().err


def test_guidance_below_one_is_refused_where_it_equals_no_guidance(models, tmp_path, capsys) -> None:
    assert _generate(models["sd1"], tmp_path, ["normal heart"], "--guidance", "0.5") == 2
    assert "so 0.5 would give the images of 1" in capsys.readouterr().err


def test_flux_applies_a_negative_prompt_through_true_cfg(models, tmp_path, capsys) -> None:
    model = models["flux"]
    assert _generate(model, tmp_path / "plain", ["normal heart"]) == 0
    assert _generate(model, tmp_path / "neg", ["normal heart"], "--negative-prompt", "lateral view",
                     "--true-cfg-scale", "3") == 0
    assert _generate(model, tmp_path / "g5", ["normal heart"], "--guidance", "5") == 0
    plain, neg = _manifest(tmp_path / "plain"), _manifest(tmp_path / "neg")
    assert plain["true_cfg_scale"] == 1.0 and plain["guidance"] == 3.5  # FluxPipeline.__call__'s defaults
    assert neg["true_cfg_scale"] == 3.0 and neg["negative_prompt"] == "lateral view"
    assert plain["guidance_mode"] == "distilled (guidance embedding)"
    pixels = [_pixels(tmp_path / k)[0].tobytes() for k in ("plain", "neg", "g5")]
    assert len(set(pixels)) == 3
    assert _generate(model, tmp_path / "refused", ["normal heart"], "--negative-prompt", "lateral view") == 2
    assert "give --true-cfg-scale above 1" in capsys.readouterr().err
    assert _generate(model, tmp_path / "refused2", ["normal heart"], "--true-cfg-scale", "3") == 2
    assert "only against a --negative-prompt" in capsys.readouterr().err


def test_flux_without_guidance_embedding_refuses_guidance(models, tmp_path, capsys) -> None:
    model = models["flux-schnell"]
    assert _generate(model, tmp_path / "plain", ["normal heart"]) == 0
    assert _manifest(tmp_path / "plain")["guidance"] is None
    assert _generate(model, tmp_path / "g", ["normal heart"], "--guidance", "5") == 2
    assert "is not guidance-distilled (guidance_embeds false)" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["pixart-alpha", "sana"])
def test_resolution_binning_is_recorded_and_can_be_turned_off(family, models, tmp_path) -> None:
    model = models[family]
    assert _generate(model, tmp_path / "binned", ["normal heart"]) == 0
    assert _generate(model, tmp_path / "exact", ["normal heart"], "--no-resolution-binning") == 0
    binned, exact = _manifest(tmp_path / "binned"), _manifest(tmp_path / "exact")
    bin_size = {"pixart-alpha": 256, "sana": 512}[family]
    assert binned["resolution_binning"] is True and binned["generated_size"] == [bin_size, bin_size]
    assert exact["resolution_binning"] is False and exact["generated_size"] == [32, 32]
    assert binned["image_size"] == exact["image_size"] == [32, 32] and binned["height"] == 32
    assert _pixels(tmp_path / "binned")[0].tobytes() != _pixels(tmp_path / "exact")[0].tobytes()


def test_resolution_binning_switch_is_refused_without_binning(models, tmp_path, capsys) -> None:
    assert _generate(models["sdxl"], tmp_path, ["a chest"], "--no-resolution-binning") == 2
    assert "has no resolution binning" in capsys.readouterr().err


def test_class_conditional_guidance_with_a_null_class(models, tmp_path) -> None:
    model = models["cc-guided"]
    labels = {"class_label": ["1"]}
    assert _generate(model, tmp_path / "plain", ["x"], **labels) == 0
    assert _generate(model, tmp_path / "g3", ["x"], "--guidance", "3", **labels) == 0
    plain, g3 = _manifest(tmp_path / "plain"), _manifest(tmp_path / "g3")
    assert plain["guidance"] == 1.0 and plain["guidance_mode"] == "none"
    assert g3["guidance"] == 3.0 and g3["guidance_mode"] == "classifier-free (null class 3)"
    assert _pixels(tmp_path / "plain")[0].tobytes() != _pixels(tmp_path / "g3")[0].tobytes()


def test_class_conditional_without_null_class_refuses_guidance_and_negative_prompts(tmp_path, capsys) -> None:
    from benchmark.demo.models import build_class_conditional

    model = build_class_conditional(tmp_path / "cc", num_classes=3)
    labels = {"class_label": ["1"]}
    assert _generate(model, tmp_path / "g", ["x"], "--guidance", "3", **labels) == 2
    assert "has no null class" in capsys.readouterr().err
    assert _generate(model, tmp_path / "n", ["x"], "--negative-prompt", "lateral", **labels) == 2
    assert "a negative prompt cannot be applied" in capsys.readouterr().err
    assert _generate(model, tmp_path / "ok", ["x"], **labels) == 0
    assert _manifest(tmp_path / "ok")["guidance"] == 1.0


@pytest.mark.parametrize("label", ["7", "3", "one", ""])
def test_class_label_outside_the_unet_is_refused_before_the_first_image(label, models, tmp_path, capsys) -> None:
    labels = {"class_label": ["0", "2", label]}  # 3 is the null class of cc-guided
    assert _generate(models["cc-guided"], tmp_path, ["x", "y", "z"], **labels) == 2
    err = capsys.readouterr().err
    assert f"prompts.csv: row 3 (line 4): column 'class_label' has {label!r}, not one of the UNet's classes 0..2" \
        in err and "3 is the null class" in err
    assert not list((tmp_path / "set").glob("images/*.png"))


@pytest.mark.parametrize("family", ["ddpm", "ddim"])
def test_unconditional_models_warn_once_about_labelled_rows(family, models, tmp_path, capsys) -> None:
    labels = {"class_label": ["0", "1", "2"], "cardiomegaly": ["1", "0", ""]}
    assert _generate(models[family], tmp_path, ["a", "b", "c"], "--batch-size", "1", **labels) == 0
    err = capsys.readouterr().err
    assert err.count("is unconditional: the labels of the prompts CSV are copied") == 1
    rows = _synthetic(tmp_path)
    assert rows["cardiomegaly"].tolist() == ["1", "0", ""] and rows["class_label"].tolist() == ["0", "1", "2"]
    manifest = _manifest(tmp_path)
    assert manifest["kind"] == "unconditional" and manifest["guidance"] == 1.0
    assert _generate(models[family], tmp_path / "g", ["a"], "--guidance", "2") == 2
    assert "is unconditional: there is nothing to guide" in capsys.readouterr().err


def test_label_columns_and_dataset_travel_without_class_label(models, tmp_path, capsys) -> None:
    columns = {"cardiomegaly": ["1", "0"], "pleural effusion": ["0", ""], "dataset": ["mimic-cxr", "mimic-cxr"],
               "view": ["PA", "AP"], "report_id": ["r1", "r2"]}
    assert _generate(models["sd1"], tmp_path, ["normal heart", "pleural effusion"], **columns) == 0
    rows = _synthetic(tmp_path)
    assert rows["cardiomegaly"].tolist() == ["1", "0"] and rows["pleural effusion"].tolist() == ["0", ""]
    assert rows["dataset"].tolist() == ["mimic-cxr"] * 2 and rows["view"].tolist() == ["PA", "AP"]
    manifest = _manifest(tmp_path)
    assert manifest["classes"] == ["cardiomegaly", "pleural effusion"] and manifest["dataset"] == "mimic-cxr"
    err = capsys.readouterr().err
    assert "dataset 'mimic-cxr' (dataset column); label columns: cardiomegaly, pleural effusion" in err


def test_one_and_two_processes_agree_for_a_binned_text_to_image_model(models, tmp_path) -> None:
    import subprocess

    from tests.conftest import REPO_ROOT

    csv = tmp_path / "prompts.csv"
    pd.DataFrame({"prompt": ["normal heart", "pleural effusion", "lateral view"]}).to_csv(csv, index=False)
    sets = []
    for processes in ("1", "2"):
        out = tmp_path / f"p{processes}"
        result = subprocess.run(
            [str(REPO_ROOT / "scripts" / "generate.sh"), "--num-processes", processes, "--model",
             str(models["pixart-sigma"]), "--prompts", str(csv), "--steps", "2", "--height", "32", "--width", "32",
             "--images-per-prompt", "2", "--batch-size", "2", "--out", str(out)],
            capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        sets.append(out)
    first, second = ({p.name: p.read_bytes() for p in sorted((s / "images").glob("*.png"))} for s in sets)
    assert len(first) == 6 and first == second
    manifest = json.loads((sets[1] / "manifest.json").read_text())
    assert manifest["num_processes"] == 2 and manifest["generated_size"] == [256, 256]
