"""Turning decoded images into torchxrayvision inputs, and checking every batch is in xrv's range.

torchxrayvision models expect one channel scaled to [-1024, 1024] from the image's *true* bit depth (255 for
8-bit, 65535 for 16-bit), centre-cropped to a square and resized (224 for the DenseNets). The steps are
torchxrayvision's own (``xrv.utils.normalize``, ``XRayCenterCrop``, ``XRayResizer``); this module applies them
to a :class:`benchmark.data.XrayImage` and serves them through a torch ``Dataset``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchxrayvision as xrv
from torch.utils.data import Dataset

from benchmark.data import DataError, XrayImage, load_image

XRV_MAX = 1024.0
_TOLERANCE = 0.5


class RangeError(DataError):
    """A batch is not in torchxrayvision's [-1024, 1024] range: the images were not normalised for it."""


def xrv_input(image: XrayImage, size: int = 224) -> np.ndarray:
    """Float32 ``(1, size, size)`` in [-1024, 1024]: xrv normalisation from the true bit depth, crop, resize."""
    scaled = xrv.utils.normalize(image.pixels, image.max_value)[None, :, :]
    cropped = xrv.datasets.XRayCenterCrop()(scaled)
    if cropped.shape[-1] == size:
        return np.ascontiguousarray(cropped, dtype=np.float32)
    return xrv.datasets.XRayResizer(size)(cropped)


def check_xrv_range(batch: torch.Tensor, where: str = "batch") -> None:
    """Stop when ``batch`` (``(N, 1, H, W)``) cannot be xrv-normalised input.

    Raises :class:`RangeError` when a value is outside [-1024, 1024], when no value is negative (raw 0..255 or
    0..1 pixels), or when every value lies in [-1, 1] (an ImageNet-style normalisation). ``where`` names the
    batch (e.g. its first file) in the message. Call it on every batch.
    """
    low, high = float(batch.min()), float(batch.max())
    if low < -XRV_MAX - _TOLERANCE or high > XRV_MAX + _TOLERANCE:
        raise RangeError(f"{where}: values span [{low:.4g}, {high:.4g}], outside torchxrayvision's [-1024, 1024]")
    if low >= 0.0:
        raise RangeError(f"{where}: no negative values (range [{low:.4g}, {high:.4g}]); the images look "
                         "unnormalised (raw 0..255 or 0..1 pixels) instead of scaled to [-1024, 1024]")
    if high <= 1.0 + 1e-3 and low >= -1.0 - 1e-3 and high > low:
        raise RangeError(f"{where}: values lie in [-1, 1] (range [{low:.4g}, {high:.4g}]); the images look "
                         "normalised for another model instead of scaled to [-1024, 1024]")


class XrayDataset(Dataset):
    """Images as xrv inputs: item ``i`` is ``(float32 tensor (1, size, size) in [-1024, 1024], i)``.

    Loading errors propagate as :class:`benchmark.data.ImageLoadError` naming the file.
    """

    def __init__(self, paths: Sequence[str | Path], size: int = 224):
        self.paths = [Path(p) for p in paths]
        self.size = int(size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = load_image(self.paths[index])
        return torch.from_numpy(xrv_input(image, self.size)), index
