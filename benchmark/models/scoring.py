"""Running a classifier over image files: batched, with workers, and the xrv range checked on every batch.

Used by the pretrained-classifier utility stage and by evaluation during training. Images go through
:class:`benchmark.data.preprocess.XrayDataset` (xrv normalisation from the true bit depth, crop, resize).
:func:`cached_predictions` keeps a classifier's outputs (in its :func:`classifier_space`) in the feature cache,
keyed by (image content, classifier weights, preprocessing), so the same real test images are scored once for every
model compared against them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader

if TYPE_CHECKING:
    from benchmark.fidelity.features import FeatureExtractor, FeatureResult
    from benchmark.models.classifiers import Classifier

from benchmark.data.preprocess import XrayDataset, check_xrv_range, xrv_input


def image_loader(paths: Sequence[str | Path], size: int, batch_size: int = 32, num_workers: int = 0,
                 shuffle: bool = False, generator: torch.Generator | None = None) -> DataLoader:
    """A DataLoader of ``(float32 (B, 1, size, size) in [-1024, 1024], indices (B,))`` over ``paths``."""
    return DataLoader(XrayDataset(paths, size), batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      generator=generator, persistent_workers=False, pin_memory=torch.cuda.is_available())


@torch.no_grad()
def score_images(forward: Callable[[torch.Tensor], torch.Tensor], paths: Sequence[str | Path], size: int,
                 batch_size: int = 32, num_workers: int = 0, device: torch.device | str = "cpu",
                 progress: str = "") -> np.ndarray:
    """Outputs of ``forward`` for every image, float32 ``(N, n_outputs)`` in the order of ``paths``.

    Every batch is range-checked before the model sees it; an unreadable image stops the run with its name.
    ``progress`` names the loop on a progress display (none when empty).
    """
    from benchmark.core.progress import progress as progress_display

    paths = [Path(p) for p in paths]
    outputs: list[np.ndarray] = []
    with progress_display(len(paths), progress, "img") as bar:
        for batch, indices in image_loader(paths, size, batch_size, num_workers):
            check_xrv_range(batch, where=f"batch starting at {paths[int(indices[0])]}")
            outputs.append(forward(batch.to(device)).float().cpu().numpy())
            bar.update(len(indices))
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32)


def classifier_space(classifier: Classifier) -> FeatureExtractor:
    """The classifier's outputs as a feature space of the feature cache: ``(N, n_outputs)`` probabilities, named by
    a fingerprint of every weight and by the preprocessing (xrv input at the classifier's size), so other weights,
    another input size or changed preprocessing never read these entries."""
    from benchmark.fidelity.features import FeatureExtractor, model_fingerprint

    device = next(classifier.model.parameters()).device
    return FeatureExtractor(
        kind="classifier-outputs", name=classifier.name, weights=classifier.name,
        fingerprint=f"{model_fingerprint(classifier.model)}|outputs={','.join(classifier.outputs)}",
        preprocessing=f"benchmark.data.preprocess.xrv_input at {classifier.input_size} px; outputs of model(x)",
        dim=len(classifier.outputs), prepare=functools.partial(xrv_input, size=classifier.input_size),
        embed=classifier.predict, device=device, check=check_xrv_range, trained_on=classifier.trained_on,
        input_size=classifier.input_size)


def cached_predictions(space: FeatureExtractor, paths: Sequence[str | Path], *, batch_size: int = 32,
                       num_workers: int = 0, cache_dir: str | Path | None = None, use_cache: bool = True,
                       progress: str = "") -> FeatureResult:
    """A classifier's outputs for every image (``space``: its :func:`classifier_space`, built once per classifier:
    the weight fingerprint reads every weight; ``.features``: float32 ``(N, n_outputs)`` in the order of ``paths``),
    read from the feature cache where this classifier already scored the same file content, computed (and stored)
    otherwise; ``.n_cached`` / ``.n_computed`` say which. An unreadable image stops with its name."""
    from benchmark.fidelity.features import extract_features

    return extract_features(paths, space, cache_dir=cache_dir, use_cache=use_cache,
                            batch_size=batch_size, num_workers=num_workers, progress=progress)
