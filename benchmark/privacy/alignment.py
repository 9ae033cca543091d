"""Text-image alignment: does a synthetic image show what its prompt says, in a vision-language space?

Owns loading a transformers dual encoder (any model with ``get_image_features`` and ``get_text_features``:
``CLIPModel``, ``SiglipModel``, or a ``VisionTextDualEncoderModel`` pairing a CXR-BERT-style text encoder with a
chest X-ray vision encoder) and its processor via ``from_pretrained``, the per-image score and its aggregation.
``biovil-t`` (CheXGenBench's model) goes through :mod:`benchmark.privacy.biovil` behind the same functions.

Tensor contract: images are float32 ``(H, W)`` greyscale arrays in [0, 1]; they are given to the processor as
8-bit RGB (the processor resizes and normalises). The score of an image and a prompt is the cosine similarity
of their projected embeddings, in [-1, 1]. Per set and class: the mean score on the images' own prompts, the
mean on shuffled prompts (a seeded derangement: each image with another image's prompt, the chance level) and
their paired difference, each with a bootstrap 95% CI over images; the real test images on their own prompts
are the reference a generator can be compared with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.core.progress import track
from benchmark.core.stats import bootstrap_indices
from benchmark.data import DataError
from benchmark.fidelity.distances import resolve_device


@dataclass
class AlignmentModel:
    """A loaded dual encoder, its processor (image processor + tokenizer) and where it came from."""

    model: Any
    processor: Any
    name: str
    device: torch.device
    max_length: int | None = None
    biovil: Any = None  # a benchmark.privacy.biovil.BioViLT in place of model + processor


def load_alignment_model(name_or_path: str | Path, *, device: str | torch.device | None = "auto",
                         trust_remote_code: bool = False) -> AlignmentModel:
    """``AutoModel`` + ``AutoProcessor`` ``from_pretrained(name_or_path)`` (a hub id or a saved folder), eval mode.

    ``biovil-t``, ``microsoft/BiomedVLP-BioViL-T`` or a folder written by :func:`benchmark.privacy.biovil.save_biovil`
    load BioViL-T instead (:func:`benchmark.privacy.biovil.load_biovil`).
    Stops with :class:`DataError` naming the model when it cannot be loaded or is not a dual encoder."""
    from benchmark.privacy import biovil

    name = str(name_or_path)
    if biovil.is_biovil(name):
        dev = resolve_device(device)
        model = biovil.load_biovil(name).to(dev)
        return AlignmentModel(model, None, name, dev, None, biovil=model)
    from transformers import AutoModel, AutoProcessor

    try:
        model = AutoModel.from_pretrained(name, trust_remote_code=trust_remote_code)
        processor = AutoProcessor.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{name}: cannot load the alignment model or its processor ({exc})") from exc
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise DataError(f"{name}: {type(model).__name__} is not a text-image dual encoder "
                        "(needs get_image_features and get_text_features)")
    if not (hasattr(processor, "image_processor") and hasattr(processor, "tokenizer")):
        raise DataError(f"{name}: {type(processor).__name__} is not a text + image processor")
    dev = resolve_device(device)
    limit = getattr(processor.tokenizer, "model_max_length", None)
    limit = limit if isinstance(limit, int) and limit < 100_000 else None
    return AlignmentModel(model.to(dev).eval(), processor, name, dev, limit)


def _rgb(image: np.ndarray):
    from PIL import Image

    grey = np.clip(np.rint(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def _features(output: Any) -> torch.Tensor:
    """The projected embedding from ``get_*_features`` (a tensor, or an output object in some versions)."""
    if isinstance(output, torch.Tensor):
        return output
    for attr in ("pooler_output", "image_embeds", "text_embeds"):
        value = getattr(output, attr, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"unexpected feature output {type(output).__name__}")


@torch.no_grad()
def embed_images(aligner: AlignmentModel, images: Sequence[np.ndarray], batch_size: int = 32,
                 progress: str = "") -> np.ndarray:
    """Unit-norm image embeddings ``(N, D)`` float32 of greyscale ``(H, W)`` images in [0, 1]; ``progress`` names
    the loop on a progress display (none when empty)."""
    out = []
    for i in track(range(0, len(images), batch_size), progress, "batch"):
        if aligner.biovil is not None:
            out.append(aligner.biovil.image_embeddings(images[i:i + batch_size]).cpu())
            continue
        batch = aligner.processor.image_processor(images=[_rgb(x) for x in images[i:i + batch_size]],
                                                  return_tensors="pt")
        pixels = batch["pixel_values"].to(aligner.device)
        out.append(torch.nn.functional.normalize(_features(aligner.model.get_image_features(pixel_values=pixels))
                                                 .float(), dim=-1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


@torch.no_grad()
def embed_texts(aligner: AlignmentModel, prompts: Sequence[str], batch_size: int = 64,
                progress: str = "") -> np.ndarray:
    """Unit-norm text embeddings ``(N, D)`` float32 (prompts truncated to the tokenizer's maximum length);
    ``progress`` names the loop on a progress display (none when empty)."""
    out = []
    for i in track(range(0, len(prompts), batch_size), progress, "batch"):
        if aligner.biovil is not None:
            out.append(aligner.biovil.text_embeddings(list(prompts[i:i + batch_size])).cpu())
            continue
        tokens = aligner.processor.tokenizer(list(prompts[i:i + batch_size]), padding=True, truncation=True,
                                             max_length=aligner.max_length, return_tensors="pt")
        tokens = {k: v.to(aligner.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        out.append(torch.nn.functional.normalize(_features(aligner.model.get_text_features(**tokens)).float(),
                                                 dim=-1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def shuffled_order(n: int, seed: int = 0) -> np.ndarray:
    """A seeded derangement of ``range(n)`` (no image keeps its own prompt); identity for ``n < 2``."""
    if n < 2:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    # a random cyclic shift of a random permutation is a derangement: image perm[k] gets prompt perm[k + s]
    shift = int(rng.integers(1, n))
    out = np.empty(n, dtype=np.int64)
    out[order] = order[(np.arange(n) + shift) % n]
    return out


def alignment_scores(image_embeddings: np.ndarray, prompt_embeddings: np.ndarray, *,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per image ``(N,)``: cosine with its own prompt and with a shuffled prompt (:func:`shuffled_order`)."""
    own = np.einsum("nd,nd->n", image_embeddings, prompt_embeddings).astype(np.float64)
    other = prompt_embeddings[shuffled_order(len(prompt_embeddings), seed)]
    return own, np.einsum("nd,nd->n", image_embeddings, other).astype(np.float64)


def aggregate(own: np.ndarray, shuffled: np.ndarray, *, n_resamples: int = 1000, seed: int = 0,
              prefix: str = "alignment") -> dict[str, float]:
    """``<prefix>_mean``, ``<prefix>_shuffled_mean`` and ``<prefix>_gain`` (own - shuffled, paired over images),
    each with a bootstrap 95% CI, and ``<prefix>_n``."""
    own, shuffled = np.asarray(own, np.float64), np.asarray(shuffled, np.float64)
    row: dict[str, float] = {f"{prefix}_n": len(own)}
    series = {"mean": own, "shuffled_mean": shuffled, "gain": own - shuffled}
    if len(own) == 0:
        for name in series:
            row.update({f"{prefix}_{name}": math.nan, f"{prefix}_{name}_ci_low": math.nan,
                        f"{prefix}_{name}_ci_high": math.nan})
        return row
    idx = bootstrap_indices(np.zeros(len(own)), n_resamples, seed, stratified=False)
    for name, values in series.items():
        means = values[idx].mean(axis=1)
        row.update({f"{prefix}_{name}": float(values.mean()),
                    f"{prefix}_{name}_ci_low": float(np.quantile(means, 0.025)),
                    f"{prefix}_{name}_ci_high": float(np.quantile(means, 0.975))})
    return row
