"""Text-image alignment (``benchmark.privacy.alignment``) and its rows from the privacy stage.

The vision-language model is a tiny untrained ``CLIPModel`` (32 px ViT, 2-layer text encoder, a BPE vocabulary
trained on the prompts in-process), saved with ``save_pretrained`` together with its ``CLIPProcessor`` and loaded
back through ``AutoModel`` / ``AutoProcessor.from_pretrained``, as a hub model would be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.core.results import read_results
from benchmark.data import DataError
from benchmark.demo.models import train_clip_tokenizer
from benchmark.demo.phantoms import FINDINGS
from benchmark.privacy import alignment
from benchmark.privacy.cli import main
from tests.test_privacy import stage  # noqa: F401  (the phantom split and synthetic set, module-scoped)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PROMPTS = [f"PA chest x-ray showing {f}" for f in FINDINGS] + ["PA chest x-ray showing no finding"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    folder = tmp_path_factory.mktemp("tiny-clip")
    tokenizer = train_clip_tokenizer(PROMPTS, folder / "bpe", vocab_size=200)
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_attention_heads": 4, "num_hidden_layers": 2, "max_position_embeddings": 77,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
                       "num_attention_heads": 4, "num_hidden_layers": 2},
        projection_dim=16)
    CLIPModel(config).save_pretrained(folder / "model")
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    processor.save_pretrained(folder / "model")
    return folder / "model"


def test_the_score_is_the_cosine_of_the_models_own_image_and_prompt_embeddings(clip_dir: Path) -> None:
    aligner = alignment.load_alignment_model(clip_dir, device="cpu")
    rng = np.random.default_rng(0)
    images = [rng.random((40, 40), dtype=np.float32) for _ in range(3)]
    image_emb = alignment.embed_images(aligner, images)
    text_emb = alignment.embed_texts(aligner, PROMPTS[:3])
    own, shuffled = alignment.alignment_scores(image_emb, text_emb, seed=0)
    with torch.no_grad():
        pixels = aligner.processor(images=[alignment._rgb(x) for x in images], return_tensors="pt")["pixel_values"]
        tokens = aligner.processor.tokenizer(PROMPTS[:3], padding=True, return_tensors="pt")
        i = torch.nn.functional.normalize(alignment._features(aligner.model.get_image_features(pixel_values=pixels)),
                                          dim=-1)
        t = torch.nn.functional.normalize(alignment._features(aligner.model.get_text_features(**tokens)), dim=-1)
    np.testing.assert_allclose(own, (i * t).sum(-1).numpy(), atol=1e-5)
    order = alignment.shuffled_order(3, seed=0)
    np.testing.assert_allclose(shuffled, (i * t[torch.as_tensor(order)]).sum(-1).numpy(), atol=1e-5)
    assert (own >= -1).all() and (own <= 1).all()


def test_shuffled_prompts_are_a_seeded_derangement() -> None:
    for n in (2, 3, 10, 101):
        order = alignment.shuffled_order(n, seed=4)
        assert sorted(order) == list(range(n)) and (order != np.arange(n)).all()
        np.testing.assert_array_equal(order, alignment.shuffled_order(n, seed=4))


def test_the_gain_over_shuffled_prompts_has_a_paired_bootstrap_interval() -> None:
    rng = np.random.default_rng(0)
    shuffled = rng.normal(0.1, 0.05, 200)
    row = alignment.aggregate(shuffled + 0.2, shuffled, n_resamples=500, seed=0)
    assert row["alignment_gain"] == pytest.approx(0.2)
    assert row["alignment_gain_ci_low"] == pytest.approx(0.2) and row["alignment_gain_ci_high"] == pytest.approx(0.2)
    assert row["alignment_mean_ci_low"] < row["alignment_mean"] < row["alignment_mean_ci_high"]
    assert row["alignment_n"] == 200


def test_a_model_that_is_not_a_dual_encoder_stops_naming_it(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "chest", "x"]))
    BertTokenizerFast(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    with pytest.raises(DataError, match=rf"{tmp_path}.*(not a text-image dual encoder|processor)"):
        alignment.load_alignment_model(tmp_path, device="cpu")
    with pytest.raises(DataError, match="nowhere"):
        alignment.load_alignment_model(tmp_path / "nowhere", device="cpu")


def test_the_stage_writes_alignment_per_class_with_the_real_reference_and_the_shuffled_chance(
        stage: dict[str, Path], clip_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    rc = main(["--real", str(stage["split"]), "--synthetic", str(stage["synthetic"]), "--results-dir", str(tmp_path),
               "--alignment-model", str(clip_dir), "--bootstrap", "200", "--device", "cpu"])
    assert rc == 0
    rows = read_results("alignment_metrics", tmp_path).set_index("class")
    assert rows.index[0] == "overall" and set(rows.index) <= {"overall", *FINDINGS}
    overall = rows.loc["overall"]
    assert int(overall["alignment_n"]) == 42 and int(overall["real_alignment_n"]) > 0
    for prefix in ("alignment", "real_alignment"):
        for stat in ("mean", "shuffled_mean", "gain"):
            low, value, high = (float(overall[f"{prefix}_{stat}{s}"]) for s in ("_ci_low", "", "_ci_high"))
            assert low <= value <= high
        assert -1 <= float(overall[f"{prefix}_mean"]) <= 1
    assert overall["alignment_model"] == str(clip_dir)
    assert not (tmp_path / "privacy_metrics.csv").exists()  # no re-id model given: no privacy rows


def test_one_run_writes_both_tables_and_the_report_shows_privacy_in_its_section_and_alignment_per_class(
        stage: dict[str, Path], clip_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    from benchmark.report import build_report
    from tests.test_privacy import TRAIN

    results = tmp_path / "results"
    rc = main(["--real", str(stage["split"]), "--synthetic", str(stage["synthetic"]), "--results-dir", str(results),
               "--alignment-model", str(clip_dir), "--model-name", "copier", *TRAIN])
    assert rc == 0
    report = build_report(results, tmp_path / "report")
    sections = {s.id: s for s in report.sections}
    markdown = report.markdown.read_text()
    memorisation = markdown.split("## Memorisation", 1)[1].split("\n## ", 1)[0]
    privacy = markdown.split("## Privacy: patient re-identification", 1)[1].split("\n## ", 1)[0]
    quality = markdown.split("## Image quality", 1)[1].split("\n## ", 1)[0]
    assert "re-id AUROC (val)" in privacy and "held-out real above (chance)" in privacy
    assert any(f.path.name.startswith("reid_") for f in sections["privacy"].figures)
    assert sections["privacy"].status == "present"
    assert "gain over shuffled" in quality
    assert all(f"| {c} |" in quality for c in ("overall", *FINDINGS) if f"| {c} |" in privacy)
    assert sections["memorisation"].status == "missing"  # the image-quality stage itself has not run: still said
    assert "Not run yet" in memorisation and "re-id AUROC (val)" not in memorisation


def test_a_cxr_bert_style_dual_encoder_loads_and_scores_like_clip(tmp_path: Path) -> None:
    # the BioViL / CXR-BERT route: a BERT text encoder (WordPiece vocabulary) and a ViT vision encoder joined by
    # VisionTextDualEncoderModel, saved and loaded back through AutoModel / AutoProcessor
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        VisionTextDualEncoderConfig,
        VisionTextDualEncoderModel,
        VisionTextDualEncoderProcessor,
        ViTConfig,
        ViTImageProcessor,
    )

    words = sorted({w for p in PROMPTS for w in p.lower().replace("-", " - ").split()})
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    torch.manual_seed(0)
    config = VisionTextDualEncoderConfig.from_vision_text_configs(
        ViTConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                  num_hidden_layers=2),
        BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_attention_heads=4,
                   num_hidden_layers=2, max_position_embeddings=64), projection_dim=16)
    folder = tmp_path / "cxr-dual"
    VisionTextDualEncoderModel(config).save_pretrained(folder)
    VisionTextDualEncoderProcessor(ViTImageProcessor(size={"height": 32, "width": 32}), tokenizer).save_pretrained(
        folder)
    aligner = alignment.load_alignment_model(folder, device="cpu")
    assert type(aligner.model).__name__ == "VisionTextDualEncoderModel"
    rng = np.random.default_rng(1)
    images = [rng.random((40, 40), dtype=np.float32) for _ in range(3)]
    own, _ = alignment.alignment_scores(alignment.embed_images(aligner, images),
                                        alignment.embed_texts(aligner, PROMPTS[:3]), seed=0)
    with torch.no_grad():
        pixels = aligner.processor(images=[alignment._rgb(x) for x in images], return_tensors="pt")["pixel_values"]
        tokens = tokenizer(PROMPTS[:3], padding=True, return_tensors="pt")
        i = torch.nn.functional.normalize(alignment._features(aligner.model.get_image_features(pixel_values=pixels)),
                                          dim=-1)
        t = torch.nn.functional.normalize(alignment._features(aligner.model.get_text_features(**tokens)), dim=-1)
    np.testing.assert_allclose(own, (i * t).sum(-1).numpy(), atol=1e-5)
    assert not np.allclose(own, own[0])  # three different scores, not a constant
