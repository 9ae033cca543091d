"""Running a classifier over image files: batched, with workers, and the xrv range checked on every batch.

Used by the pretrained-classifier utility stage and by evaluation during training. Images go through
:class:`benchmark.data.preprocess.XrayDataset` (xrv normalisation from the true bit depth, crop, resize).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmark.data.preprocess import XrayDataset, check_xrv_range


def image_loader(paths: Sequence[str | Path], size: int, batch_size: int = 32, num_workers: int = 0,
                 shuffle: bool = False, generator: torch.Generator | None = None) -> DataLoader:
    """A DataLoader of ``(float32 (B, 1, size, size) in [-1024, 1024], indices (B,))`` over ``paths``."""
    return DataLoader(XrayDataset(paths, size), batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      generator=generator, persistent_workers=False, pin_memory=torch.cuda.is_available())


@torch.no_grad()
def score_images(forward: Callable[[torch.Tensor], torch.Tensor], paths: Sequence[str | Path], size: int,
                 batch_size: int = 32, num_workers: int = 0, device: torch.device | str = "cpu") -> np.ndarray:
    """Outputs of ``forward`` for every image, float32 ``(N, n_outputs)`` in the order of ``paths``.

    Every batch is range-checked before the model sees it; an unreadable image stops the run with its name.
    """
    paths = [Path(p) for p in paths]
    outputs: list[np.ndarray] = []
    for batch, indices in image_loader(paths, size, batch_size, num_workers):
        check_xrv_range(batch, where=f"batch starting at {paths[int(indices[0])]}")
        outputs.append(forward(batch.to(device)).float().cpu().numpy())
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32)
