"""BioViL-T alignment (``benchmark.privacy.biovil``), CheXGenBench's model, behind the alignment interface.

The model is a tiny BioViL-T of the same classes as the real one (``health_multimodal``'s ``ImageModel`` with a
multi-image ResNet-18 encoder, ``CXRBertModel`` with a 2-layer config and a ``CXRBertTokenizer`` on a small WordPiece
vocabulary), untrained, saved with :func:`save_biovil` and loaded back through ``load_alignment_model``. Images:
real NIH chest X-rays from ``../shared/data/cxr`` (square 8-bit PNGs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.core.results import read_results
from benchmark.data import DataError
from benchmark.data.images import load_image
from benchmark.demo.phantoms import FINDINGS
from benchmark.fidelity.features import square_float
from benchmark.privacy import alignment, biovil
from benchmark.privacy.cli import main
from tests.conftest import shared_data
from tests.test_privacy import stage  # noqa: F401  (the phantom split and synthetic set, module-scoped)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PROMPTS = ["Mild cardiomegaly.", "No acute cardiopulmonary process", "Soft tissue mass in the right upper lobe!",
           "Small left pleural effusion"]


@pytest.fixture(scope="module")
def biovil_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    biovil._import_hi_ml()  # quiet about its deprecated timm import
    from health_multimodal.image.model.model import ImageModel
    from health_multimodal.image.model.types import ImageEncoderType
    from health_multimodal.text.model import CXRBertConfig, CXRBertModel, CXRBertTokenizer

    folder = tmp_path_factory.mktemp("tiny-biovil")
    words = sorted({w.strip("!?.,").lower() for p in PROMPTS for w in p.split()}
                   | {w.lower() for f in FINDINGS for w in f.replace("_", " ").split()} | {"pa", "chest", "x-ray",
                                                                                          "showing", "no", "finding"})
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = CXRBertTokenizer(vocab_file=str(folder / "vocab.txt"))
    torch.manual_seed(0)
    text = CXRBertModel(CXRBertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                      projection_size=16))
    image = ImageModel(img_encoder_type=ImageEncoderType.RESNET18_MULTI_IMAGE, joint_feature_size=16)
    model = biovil.BioViLT(image.eval(), text.eval(), tokenizer, resize=64, center_crop=56)
    return biovil.save_biovil(model, folder / "model")


def _nih_paths(n: int) -> list[Path]:
    labels = pd.read_csv(shared_data("cxr", "labels.csv"))
    return [shared_data("cxr", p) for p in labels[labels["source"] == "nih_cxr14"].head(n)["path"]]


def test_the_saved_folder_loads_back_as_biovil_t_behind_the_alignment_interface(biovil_dir: Path) -> None:
    aligner = alignment.load_alignment_model(biovil_dir, device="cpu")
    assert aligner.biovil is not None and aligner.name == str(biovil_dir)
    assert type(aligner.biovil.image_model).__name__ == "ImageModel"
    assert type(aligner.biovil.text_model).__name__ == "CXRBertModel"
    assert (aligner.biovil.resize, aligner.biovil.center_crop) == (64, 56)
    assert not aligner.biovil.image_model.training and not aligner.biovil.text_model.training


def test_image_embeddings_equal_hi_ml_s_image_engine_on_the_same_file(biovil_dir: Path) -> None:
    # CheXGenBench: ImageInferenceEngine.get_projected_global_embedding(path) (load_image: min-max to uint8)
    from health_multimodal.image import ImageInferenceEngine

    aligner = alignment.load_alignment_model(biovil_dir, device="cpu")
    paths = _nih_paths(3)
    ours = alignment.embed_images(aligner, [square_float(load_image(p)) for p in paths], batch_size=2)
    engine = ImageInferenceEngine(image_model=aligner.biovil.image_model, transform=aligner.biovil.transform)
    theirs = np.stack([engine.get_projected_global_embedding(p).numpy() for p in paths])
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(ours[0], ours[1])  # different images, different embeddings


def test_text_embeddings_strip_trailing_punctuation_and_do_not_depend_on_the_batch(biovil_dir: Path) -> None:
    aligner = alignment.load_alignment_model(biovil_dir, device="cpu")
    batched = alignment.embed_texts(aligner, PROMPTS, batch_size=4)
    single = np.concatenate([alignment.embed_texts(aligner, [p]) for p in PROMPTS])
    np.testing.assert_allclose(batched, single, atol=1e-5)  # padding to the longest prompt changes nothing
    np.testing.assert_allclose(alignment.embed_texts(aligner, ["Mild cardiomegaly"]), batched[:1], atol=1e-6)
    model = aligner.biovil.text_model
    ids = aligner.biovil.tokenizer(["mild cardiomegaly"], return_tensors="pt")
    with torch.no_grad():
        direct = torch.nn.functional.normalize(model.get_projected_text_embeddings(
            ids["input_ids"], ids["attention_mask"], normalize_embeddings=False), dim=-1).numpy()
    np.testing.assert_allclose(batched[:1], direct, atol=1e-5)
    assert not np.allclose(batched[0], batched[1])


def test_a_prompt_with_a_special_token_stops_naming_it(biovil_dir: Path) -> None:
    aligner = alignment.load_alignment_model(biovil_dir, device="cpu")
    with pytest.raises(DataError, match=r"effusion \[SEP\] mass.*special token"):
        alignment.embed_texts(aligner, ["Small effusion [SEP] mass"])


def test_the_hub_name_downloads_as_hi_ml_does_and_says_so_when_it_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    from health_multimodal.image.model import pretrained

    assert biovil.is_biovil("biovil-t") and biovil.is_biovil("microsoft/BiomedVLP-BioViL-T")
    assert not biovil.is_biovil("openai/clip-vit-base-patch32")
    asked: list[tuple[str, str]] = []

    def no_network(url: str, root: str, filename: str, md5: str) -> None:
        asked.append((url, md5))
        raise OSError("no network here")

    monkeypatch.setattr(pretrained, "download_url", no_network)
    with pytest.raises(DataError, match=r"biovil-t: cannot load BioViL-T .*no network here"):
        alignment.load_alignment_model("biovil-t", device="cpu")
    assert asked == [(pretrained.BIOVIL_T_IMAGE_WEIGHTS_URL, pretrained.BIOVIL_T_IMAGE_WEIGHTS_MD5)]


def test_the_stage_writes_biovil_t_alignment_rows(stage: dict[str, Path], biovil_dir: Path,  # noqa: F811
                                                 tmp_path: Path) -> None:
    rc = main(["--real", str(stage["split"]), "--synthetic", str(stage["synthetic"]), "--results-dir", str(tmp_path),
               "--alignment-model", str(biovil_dir), "--bootstrap", "100", "--device", "cpu"])
    assert rc == 0
    rows = read_results("alignment_metrics", tmp_path).set_index("class")
    overall = rows.loc["overall"]
    assert overall["alignment_model"] == str(biovil_dir)
    assert int(overall["alignment_n"]) == 42 and int(overall["real_alignment_n"]) > 0
    for prefix in ("alignment", "real_alignment"):
        low, value, high = (float(overall[f"{prefix}_mean{s}"]) for s in ("_ci_low", "", "_ci_high"))
        assert -1 <= low <= value <= high <= 1
    scores = pd.read_csv(Path(overall["report_dir"]) / "alignment_scores.csv")
    assert scores["alignment"].nunique() > 1  # per image, not a constant
