"""Diversity of a synthetic set: MS-SSIM between images of the same prompt and between random pairs, each with the
real set's value beside it (lower = more diverse; RoentGen used 4 images per prompt).

MS-SSIM is torchmetrics' (Gaussian window 11, sigma 1.5, data range 1, ``normalize="relu"``). Five scales need
images of at least 176 px, so every image is centre-cropped and resized (bilinear, antialiased) to ``size``
(default 256) first, whatever its own size. A smaller ``size`` uses the largest number of scales torchmetrics
accepts for it, with the standard betas truncated and renormalised to sum to 1; the size, the number of scales
and this note go into every result row. Same-prompt values average each prompt's pairs first, so every prompt
weighs the same; intervals are normal 95% intervals over prompts (same prompt) or pairs (random pairs).
torchmetrics' MS-SSIM reads 0.007-0.019 below ``pytorch_msssim`` (which many papers use) on the same pairs; every
row says so in ``msssim_method``, so figures are compared only with figures of the same implementation.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

from benchmark.data import XrayImage, load_image
from benchmark.fidelity.defaults import DEFAULT_PAIRS, DEFAULT_PER_PROMPT, DEFAULT_PROMPTS, DEFAULT_SIZE
from benchmark.fidelity.distances import mean_interval, resolve_device
from benchmark.fidelity.features import square_float

MSSSIM_BETAS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MSSSIM_METHOD = ("torchmetrics multiscale_structural_similarity_index_measure; reads 0.007-0.019 below "
                 "pytorch_msssim on the same pairs")
KERNEL_SIZE = 11


def msssim_scales(size: int, kernel_size: int = KERNEL_SIZE) -> int:
    """Largest number of scales (at most 5) torchmetrics' MS-SSIM accepts for ``size`` px images: it needs
    ``size >= 2**n`` and ``size // max(1, n - 1)**2 > kernel_size - 1`` (5 scales: at least 176 px)."""
    for n in range(len(MSSSIM_BETAS), 0, -1):
        if size >= 2**n and size // max(1, n - 1) ** 2 > kernel_size - 1:
            return n
    raise ValueError(f"{size}px is too small for MS-SSIM with an {kernel_size}px window (at least {kernel_size}px)")


def msssim_betas(n_scales: int) -> tuple[float, ...]:
    """The standard five MS-SSIM betas, truncated to ``n_scales`` and renormalised to sum to 1 (5: unchanged)."""
    if n_scales == len(MSSSIM_BETAS):
        return MSSSIM_BETAS
    betas = np.asarray(MSSSIM_BETAS[:n_scales])
    return tuple(float(b) for b in betas / betas.sum())


def msssim_note(size: int) -> str:
    """What the MS-SSIM figures of a run mean, for the result rows."""
    n = msssim_scales(size)
    if n == len(MSSSIM_BETAS):
        scales = "all 5 scales, standard betas"
    else:
        betas = ", ".join(f"{b:.4f}" for b in msssim_betas(n))
        scales = f"{n} scales (betas {betas}: the first {n} standard betas renormalised)"
    return f"images centre-cropped and resized to {size}px (bilinear, antialiased); {scales}"


def msssim_input(image: XrayImage, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Float32 ``(size, size)`` in [0, 1] from the true bit depth: centre crop, bilinear antialiased resize."""
    square = torch.from_numpy(np.ascontiguousarray(square_float(image)))[None, None]
    if square.shape[-1] != size:
        square = torch.nn.functional.interpolate(square, size=(size, size), mode="bilinear", antialias=True,
                                                 align_corners=False)
    return square[0, 0].clamp(0.0, 1.0).numpy()


def msssim_pairs(images: np.ndarray, pairs: np.ndarray, *, batch_size: int = 32,
                 device: str | torch.device | None = "auto") -> np.ndarray:
    """MS-SSIM ``(P,)`` float64 of each pair ``(i, j)`` of ``pairs`` ``(P, 2)`` over ``images`` ``(N, S, S)``
    float in [0, 1], with the scales :func:`msssim_scales` allows for S."""
    images = np.asarray(images, dtype=np.float32)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    betas = msssim_betas(msssim_scales(images.shape[-1]))
    dev = resolve_device(device)
    out = np.empty(len(pairs), dtype=np.float64)
    for p0 in range(0, len(pairs), batch_size):
        block = pairs[p0:p0 + batch_size]
        a = torch.as_tensor(images[block[:, 0]], device=dev)[:, None]
        b = torch.as_tensor(images[block[:, 1]], device=dev)[:, None]
        values = multiscale_structural_similarity_index_measure(a, b, data_range=1.0, kernel_size=KERNEL_SIZE,
                                                                betas=betas, reduction="none")
        out[p0:p0 + len(block)] = values.double().cpu().numpy()
    return out


def same_prompt_pairs(prompts: Sequence[str], *, per_prompt: int = DEFAULT_PER_PROMPT,
                      max_prompts: int | None = DEFAULT_PROMPTS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All pairs among up to ``per_prompt`` images of each prompt with at least two images, for up to
    ``max_prompts`` prompts (seeded choices). Returns pairs ``(P, 2)`` int64 and the prompt number ``(P,)`` of each
    pair (0 .. number of prompts used - 1)."""
    rng = np.random.default_rng([seed, 3313])
    groups: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(str(prompt), []).append(i)
    usable = sorted(p for p, members in groups.items() if len(members) >= 2)
    if max_prompts is not None and len(usable) > max_prompts:
        usable = sorted(rng.choice(usable, size=max_prompts, replace=False).tolist())
    pairs: list[tuple[int, int]] = []
    owner: list[int] = []
    for number, prompt in enumerate(usable):
        members = np.asarray(groups[prompt])
        if len(members) > per_prompt:
            members = np.sort(rng.choice(members, size=per_prompt, replace=False))
        for i, j in itertools.combinations(members.tolist(), 2):
            pairs.append((i, j))
            owner.append(number)
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2), np.asarray(owner, dtype=np.int64)


def random_pairs(n_items: int, n_pairs: int = DEFAULT_PAIRS, seed: int = 0) -> np.ndarray:
    """``(P, 2)`` int64 distinct pairs ``i < j`` drawn uniformly without replacement (all of them when there are
    no more than ``n_pairs``)."""
    total = n_items * (n_items - 1) // 2
    if total == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if total <= n_pairs:
        return np.asarray(list(itertools.combinations(range(n_items), 2)), dtype=np.int64)
    rng = np.random.default_rng([seed, 1907])
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < n_pairs:
        i, j = rng.integers(0, n_items, size=2)
        if i != j:
            chosen.add((int(min(i, j)), int(max(i, j))))
    return np.asarray(sorted(chosen), dtype=np.int64)


def _pair_images(paths: Sequence[str | Path], pairs: np.ndarray, size: int,
                 load: Callable[[str | Path], XrayImage]) -> tuple[np.ndarray, np.ndarray]:
    """Images of the items used by ``pairs`` ``(n_used, size, size)``, and the pairs renumbered into them."""
    used = np.unique(pairs)
    position = {int(item): k for k, item in enumerate(used)}
    images = np.stack([msssim_input(load(paths[int(i)]), size) for i in used]) if len(used) else \
        np.zeros((0, size, size), np.float32)
    return images, np.vectorize(position.__getitem__, otypes=[np.int64])(pairs) if len(pairs) else pairs


def diversity_metrics(
    synthetic_paths: Sequence[str | Path],
    synthetic_prompts: Sequence[str],
    real_paths: Sequence[str | Path],
    real_prompts: Sequence[str],
    *,
    size: int = DEFAULT_SIZE,
    n_pairs: int = DEFAULT_PAIRS,
    per_prompt: int = DEFAULT_PER_PROMPT,
    max_prompts: int | None = DEFAULT_PROMPTS,
    seed: int = 0,
    device: str | torch.device | None = "auto",
    load: Callable[[str | Path], XrayImage] = load_image,
) -> dict[str, Any]:
    """MS-SSIM diversity figures as result-row columns: ``msssim_same_prompt`` (synthetic) and
    ``msssim_same_prompt_real``, ``msssim_random`` and ``msssim_random_real``, each with ``*_ci_low`` /
    ``*_ci_high`` and the number of pairs (and prompts) behind it, plus ``msssim_size``, ``msssim_scales`` and
    ``msssim_note`` and ``msssim_method`` (:data:`MSSSIM_METHOD`). Figures without a single pair are NaN. Only the
    images in the sampled pairs are read."""
    row: dict[str, Any] = {"msssim_size": size, "msssim_scales": msssim_scales(size), "msssim_note": msssim_note(size),
                           "msssim_method": MSSSIM_METHOD}
    for suffix, paths, prompts in (("", synthetic_paths, synthetic_prompts), ("_real", real_paths, real_prompts)):
        pairs, owner = same_prompt_pairs(prompts, per_prompt=per_prompt, max_prompts=max_prompts, seed=seed)
        images, local = _pair_images(paths, pairs, size, load)
        values = msssim_pairs(images, local, device=device) if len(pairs) else np.zeros(0)
        per_prompt_mean = np.array([values[owner == g].mean() for g in np.unique(owner)])
        row[f"msssim_same_prompt{suffix}"] = float(per_prompt_mean.mean()) if per_prompt_mean.size else np.nan
        row[f"msssim_same_prompt{suffix}_ci_low"], row[f"msssim_same_prompt{suffix}_ci_high"] = \
            mean_interval(per_prompt_mean)
        row[f"msssim_same_prompt{suffix}_pairs"] = len(pairs)
        row[f"msssim_same_prompt{suffix}_prompts"] = int(per_prompt_mean.size)
        pairs = random_pairs(len(paths), n_pairs, seed)
        images, local = _pair_images(paths, pairs, size, load)
        values = msssim_pairs(images, local, device=device) if len(pairs) else np.zeros(0)
        row[f"msssim_random{suffix}"] = float(values.mean()) if values.size else np.nan
        row[f"msssim_random{suffix}_ci_low"], row[f"msssim_random{suffix}_ci_high"] = mean_interval(values)
        row[f"msssim_random{suffix}_pairs"] = len(pairs)
    return row
