"""BioViL-T, CheXGenBench's image-text alignment model, loaded through Microsoft's ``hi-ml-multimodal``.

CheXGenBench scores alignment with ``health_multimodal``'s ``ImageTextInferenceEngine`` on BioViL-T
(``microsoft/BiomedVLP-BioViL-T``): the cosine of the image's projected global embedding and the prompt's projected
CLS embedding. This module rebuilds that score from the same classes, so ``--alignment-model biovil-t`` gives
their figure inside this harness's alignment rows (own vs shuffled prompts, intervals, the real reference):

* image: the greyscale image as 8 bits, min-max stretched to [0, 255] (``health_multimodal``'s
  ``remap_to_uint8``), then its inference transform (resize the short side to 512, centre-crop 448, ``ToTensor``,
  three channels), the ``ImageModel``'s ``projected_global_embedding``, L2-normalised;
* text: trailing ``!?.`` stripped, special tokens refused, tokenised with special tokens and padding to the longest
  prompt of the batch, ``CXRBertModel.get_projected_text_embeddings``, L2-normalised.

The text side is tokenised here rather than by ``health_multimodal``'s ``TextInferenceEngine``: that engine calls
``batch_encode_plus``, which transformers 5 removed; the call here is its documented equivalent (same ids, same
mask). The images reach this module centre-cropped to a square (:func:`benchmark.fidelity.features.square_float`);
on a square 8-bit image the embedding equals ``ImageInferenceEngine.get_projected_global_embedding(path)``.

Loading: ``biovil-t`` (or ``microsoft/BiomedVLP-BioViL-T``) downloads the weights as ``health_multimodal`` does
(text model and tokenizer with ``from_pretrained`` at its pinned revision; image weights from the same hub repository
by URL, md5-checked, into the temporary folder).
A folder written by :func:`save_biovil` (``biovil.json``, ``image_model.pt``, ``text/``) loads the same classes from
disk: an offline copy of the real model, or a tiny one for tests.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.data import DataError

HUB_NAMES = ("biovil-t", "microsoft/BiomedVLP-BioViL-T")
MARKER = "biovil.json"
RESIZE, CENTER_CROP = 512, 448  # health_multimodal.image.get_image_inference for BioViL-T


def is_biovil(name_or_path: str | Path) -> bool:
    """True for the hub names of BioViL-T and for a folder written by :func:`save_biovil`."""
    return str(name_or_path).lower() in {n.lower() for n in HUB_NAMES} or (Path(name_or_path) / MARKER).is_file()


def _import_hi_ml() -> Any:
    try:
        with warnings.catch_warnings():  # its timm import path is deprecated (a FutureWarning on every load)
            warnings.simplefilter("ignore", FutureWarning)
            import health_multimodal.image
            import health_multimodal.text.model
    except ImportError as exc:  # an environment made without the lock
        raise DataError(f"BioViL-T needs the hi-ml-multimodal package ({exc}); install the project's lock with "
                        "./scripts/setup.sh") from exc
    import health_multimodal

    return health_multimodal


class BioViLT(torch.nn.Module):
    """The image model, the text model, the tokenizer and the image transform, as one module.

    ``image_embeddings(images)``: ``(N, D)`` unit-norm float32 from greyscale ``(H, W)`` float arrays in [0, 1];
    ``text_embeddings(prompts)``: ``(N, D)`` unit-norm float32."""

    def __init__(self, image_model: torch.nn.Module, text_model: torch.nn.Module, tokenizer: Any,
                 resize: int = RESIZE, center_crop: int = CENTER_CROP) -> None:
        super().__init__()
        from health_multimodal.image.data.transforms import create_chest_xray_transform_for_inference

        self.image_model, self.text_model, self.tokenizer = image_model, text_model, tokenizer
        self.resize, self.center_crop = int(resize), int(center_crop)
        self.transform = create_chest_xray_transform_for_inference(resize=self.resize,
                                                                   center_crop_size=self.center_crop)

    def image_input(self, image: np.ndarray) -> torch.Tensor:
        """``(3, crop, crop)`` float32: the image as ``health_multimodal.image.data.io.load_image`` would give it
        from an 8-bit file (min-max stretched to uint8; a constant image stays 0), then the transform."""
        from PIL import Image

        grey = np.clip(np.rint(np.asarray(image, np.float64) * 255.0), 0, 255)
        low, high = grey.min(), grey.max()
        stretched = ((grey - low) / (high - low) * 255).astype(np.uint8) if high > low else np.zeros_like(
            grey, np.uint8)
        return self.transform(Image.fromarray(stretched).convert("L"))

    @torch.no_grad()
    def image_embeddings(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        device = next(self.image_model.parameters()).device
        batch = torch.stack([self.image_input(x) for x in images]).to(device)
        emb = self.image_model(batch).projected_global_embedding
        return torch.nn.functional.normalize(emb.float(), dim=-1)

    def tokens(self, prompts: Sequence[str]) -> Any:
        """Token ids and mask as ``health_multimodal``'s ``TextInput.tokenize_input_prompts`` makes them."""
        special = [t for t in self.tokenizer.all_special_tokens if t != self.tokenizer.mask_token]
        for prompt in prompts:
            found = [t for t in special if t in prompt]
            if found:
                raise DataError(f"prompt {prompt!r} contains the special token(s) {found}; BioViL-T refuses it")
        limit = int(self.text_model.config.max_position_embeddings)
        out = self.tokenizer([p.rstrip("!?.") for p in prompts], add_special_tokens=True, padding="longest",
                             return_tensors="pt")
        if out["input_ids"].shape[1] > limit:
            longest = max(prompts, key=len)
            raise DataError(f"prompt {longest[:80]!r}... is longer than BioViL-T's {limit} tokens")
        return out

    @torch.no_grad()
    def text_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        device = next(self.text_model.parameters()).device
        tokens = self.tokens(prompts)
        emb = self.text_model.get_projected_text_embeddings(input_ids=tokens["input_ids"].to(device),
                                                           attention_mask=tokens["attention_mask"].to(device),
                                                           normalize_embeddings=False)
        return torch.nn.functional.normalize(emb.float(), dim=-1)


def load_biovil(name_or_path: str | Path) -> BioViLT:
    """BioViL-T in eval mode: downloaded as ``health_multimodal`` does for a hub name, else from a
    :func:`save_biovil` folder. Stops with :class:`DataError` naming the source when it cannot be loaded."""
    _import_hi_ml()
    from health_multimodal.image.model.model import ImageModel
    from health_multimodal.text.model import CXRBertModel, CXRBertTokenizer

    name = str(name_or_path)
    try:
        if (Path(name) / MARKER).is_file():
            folder = Path(name)
            meta = json.loads((folder / MARKER).read_text())
            image_model = ImageModel(img_encoder_type=meta["image_encoder_type"],
                                     joint_feature_size=int(meta["joint_feature_size"]),
                                     pretrained_model_path=folder / "image_model.pt")
            tokenizer = CXRBertTokenizer.from_pretrained(folder / "text")
            text_model = CXRBertModel.from_pretrained(folder / "text")
            resize, crop = int(meta["resize"]), int(meta["center_crop"])
        else:
            from health_multimodal.image.model.pretrained import (
                BIOMED_VLP_BIOVIL_T,
                BIOVIL_T_COMMIT_TAG,
                get_biovil_t_image_encoder,
            )

            image_model = get_biovil_t_image_encoder()
            tokenizer = CXRBertTokenizer.from_pretrained(BIOMED_VLP_BIOVIL_T, revision=BIOVIL_T_COMMIT_TAG)
            text_model = CXRBertModel.from_pretrained(BIOMED_VLP_BIOVIL_T, revision=BIOVIL_T_COMMIT_TAG)
            resize, crop = RESIZE, CENTER_CROP
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise DataError(f"{name}: cannot load BioViL-T ({type(exc).__name__}: {exc})") from exc
    return BioViLT(image_model.eval(), text_model.eval(), tokenizer, resize, crop).eval()


def save_biovil(model: BioViLT, folder: str | Path) -> Path:
    """Write ``model`` as a folder :func:`load_biovil` reads offline: ``biovil.json`` (encoder type, joint size,
    transform sizes), ``image_model.pt`` (the image model's state dict) and ``text/`` (``save_pretrained``)."""
    folder = Path(folder)
    (folder / "text").mkdir(parents=True, exist_ok=True)
    image_model = model.image_model
    torch.save(image_model.state_dict(), folder / "image_model.pt")
    model.text_model.save_pretrained(folder / "text")
    model.tokenizer.save_pretrained(folder / "text")
    encoder_type = image_model.encoder.img_encoder_type
    meta = {"image_encoder_type": str(getattr(encoder_type, "value", encoder_type)),
            "joint_feature_size": int(image_model.projector.output_dim),
            "resize": model.resize, "center_crop": model.center_crop}
    (folder / MARKER).write_text(json.dumps(meta, indent=2) + "\n")
    return folder
