"""Memorisation / privacy check: does a synthetic image copy a real training image?

Owns the nearest-training-image search in two spaces and its calibration:

* feature space: cosine similarity of extractor features centred on the training-set mean (centring removes the
  large shared mean direction of ReLU features, which otherwise makes every pair look alike);
* pixel space: RMSE of the images as float in [0, 1] (never uint8 arithmetic, which wraps around), minimised over
  a horizontal flip and integer shifts of up to ``max_shift`` pixels (compared on the central crop that every
  shift shares), so flipped and slightly moved copies are found too.

The threshold of each space is calibrated on real-real pairs of *different* patients: every calibration training
image's nearest training image from another patient. A synthetic image is flagged in a space when it is closer
to its nearest training image than the ``quantile`` of those real pairs (default 0.999: a generator that makes
new patients has about 0.1% of its images flagged per space by chance, or about 1/(n+1) with n calibration images
when that is more); held-out real images (other patients) are flagged the same way and their share is reported
beside the synthetic one as the chance level. Every function takes arrays and returns arrays; the searches are
blocked (:class:`benchmark.fidelity.distances.NeighbourIndex`), never holding an N x M matrix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmark.core.stats import wilson_interval
from benchmark.fidelity.defaults import DEFAULT_CALIBRATION_N, DEFAULT_MAX_SHIFT, DEFAULT_QUANTILE
from benchmark.fidelity.distances import (
    DEFAULT_QUERY_CHUNK,
    DEFAULT_REF_CHUNK,
    NeighbourIndex,
    chunked_knn,
    subsample_indices,
)

DEFAULT_GRID_PAIRS = 12


def feature_neighbours(
    query: np.ndarray,
    ref: np.ndarray,
    centre: np.ndarray,
    *,
    query_groups: Sequence[Any] | None = None,
    ref_groups: Sequence[Any] | None = None,
    device: str | torch.device | None = "auto",
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    ref_chunk: int = DEFAULT_REF_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest ``ref`` row of every ``query`` row by cosine similarity of the features minus ``centre`` ``(D,)``.

    ``query`` ``(N, D)``, ``ref`` ``(M, D)``; returns similarities ``(N,)`` float64 in [-1, 1] and indices
    ``(N,)`` int64 (-1 when every ref row shares the query's group).
    """
    centre = np.asarray(centre, dtype=np.float32)[None, :]
    sims, idx = chunked_knn(np.asarray(query, np.float32) - centre, np.asarray(ref, np.float32) - centre, 1,
                            metric="cosine", query_groups=query_groups, ref_groups=ref_groups, device=device,
                            query_chunk=query_chunk, ref_chunk=ref_chunk)
    return np.clip(sims[:, 0], -1.0, 1.0), idx[:, 0]


def pixel_variants(max_shift: int, flip: bool) -> list[tuple[bool, int, int]]:
    """The (flip, dy, dx) alignments tried by :func:`aligned_pixel_neighbours`, identity first."""
    shifts = [(dy, dx) for dy in range(-max_shift, max_shift + 1) for dx in range(-max_shift, max_shift + 1)]
    shifts.sort(key=lambda s: (abs(s[0]) + abs(s[1]), s))
    return [(f, dy, dx) for f in ((False, True) if flip else (False,)) for dy, dx in shifts]


def aligned_pixel_neighbours(
    query: np.ndarray,
    ref: np.ndarray,
    *,
    max_shift: int = DEFAULT_MAX_SHIFT,
    flip: bool = True,
    query_groups: Sequence[Any] | None = None,
    ref_groups: Sequence[Any] | None = None,
    device: str | torch.device | None = "auto",
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    ref_chunk: int = DEFAULT_REF_CHUNK,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest ``ref`` image of every ``query`` image in pixel space, tolerant to a flip and small shifts.

    ``query`` ``(N, S, S)`` and ``ref`` ``(M, S, S)`` of any real dtype are compared as float32 (no integer
    wrap-around), on the central ``(S - 2 max_shift)^2`` crop: for each (flip, dy, dx) of
    :func:`pixel_variants` the query is flipped left-right, shifted by (dy, dx) and compared with the reference
    crop. Returns the smallest RMSE ``(N,)`` float64 (in the images' units), the index ``(N,)`` int64 of that
    reference image and the index ``(N,)`` of the winning variant.
    """
    q = np.ascontiguousarray(query, dtype=np.float32)
    r = np.ascontiguousarray(ref, dtype=np.float32)
    if q.ndim != 3 or r.ndim != 3 or q.shape[1:] != r.shape[1:] or q.shape[1] != q.shape[2]:
        raise ValueError(f"expected square images (N, S, S) and (M, S, S), got {q.shape} and {r.shape}")
    size = q.shape[1]
    s = int(max_shift)
    if s < 0 or size - 2 * s < 1:
        raise ValueError(f"max_shift={max_shift} is too large for {size}px images")
    inner = size - 2 * s
    index = NeighbourIndex(r[:, s:size - s, s:size - s].reshape(len(r), -1), "euclidean", ref_groups=ref_groups,
                           device=device, ref_chunk=ref_chunk)
    variants = pixel_variants(s, flip)
    # windows come out flip-major, then dy, then dx; `order[v]` is the window of pixel_variants()[v]
    width = 2 * s + 1
    order = np.array([(width * width if flipped else 0) + (dy + s) * width + (dx + s) for flipped, dy, dx in variants])
    groups = None if query_groups is None else np.asarray(query_groups).astype(str)
    per_chunk = max(1, query_chunk // len(variants))
    best = np.empty(len(q), dtype=np.float64)
    best_idx = np.empty(len(q), dtype=np.int64)
    best_variant = np.empty(len(q), dtype=np.int64)
    for q0 in range(0, len(q), per_chunk):
        block = torch.as_tensor(q[q0:q0 + per_chunk], device=index.device)
        sources = torch.stack([block, block.flip(-1)]) if flip else block[None]
        windows = sources.unfold(2, inner, 1).unfold(3, inner, 1)  # (F, c, 2s+1, 2s+1, inner, inner), a view
        stacked = windows.permute(0, 2, 3, 1, 4, 5).reshape(-1, inner * inner)  # window-major rows, one copy
        n_windows = stacked.shape[0] // len(block)
        dist, idx = index.search(stacked, 1, query_chunk=query_chunk,
                                 query_groups=None if groups is None else np.tile(groups[q0:q0 + per_chunk],
                                                                                  n_windows))
        dist = dist[:, 0].reshape(n_windows, len(block))[order]
        idx = idx[:, 0].reshape(n_windows, len(block))[order]
        winner = dist.argmin(axis=0)  # the first variant (the identity when it ties) wins ties
        cols = np.arange(len(block))
        best[q0:q0 + len(block)] = dist[winner, cols] / math.sqrt(inner * inner)
        best_idx[q0:q0 + len(block)] = idx[winner, cols]
        best_variant[q0:q0 + len(block)] = winner
    return best, best_idx, best_variant


@dataclass(frozen=True)
class Calibration:
    """Thresholds from real-real nearest pairs of different patients: a synthetic image is flagged when its
    feature similarity is above ``feature_threshold`` or its pixel RMSE below ``pixel_threshold``."""

    quantile: float
    feature_threshold: float
    pixel_threshold: float
    feature_values: np.ndarray
    pixel_values: np.ndarray
    query_indices: np.ndarray


def calibrate(
    train_features: np.ndarray,
    train_pixels: np.ndarray,
    train_patients: Sequence[Any],
    *,
    quantile: float = DEFAULT_QUANTILE,
    n_calibration: int | None = DEFAULT_CALIBRATION_N,
    max_shift: int = DEFAULT_MAX_SHIFT,
    flip: bool = True,
    seed: int = 0,
    device: str | torch.device | None = "auto",
) -> Calibration:
    """Thresholds from up to ``n_calibration`` training images (seeded sample) and their nearest training image
    of another patient, in both spaces: the ``quantile`` of the similarities and the ``1 - quantile`` quantile of
    the RMSEs. ``train_features`` ``(M, D)``, ``train_pixels`` ``(M, S, S)``, ``train_patients`` ``(M,)``."""
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    patients = np.asarray(train_patients).astype(str)
    if len(np.unique(patients)) < 2:
        raise ValueError("calibration needs training images of at least two patients")
    queries = subsample_indices(len(patients), n_calibration, seed)
    centre = np.asarray(train_features, np.float32).mean(axis=0)
    sims, _ = feature_neighbours(train_features[queries], train_features, centre, query_groups=patients[queries],
                                 ref_groups=patients, device=device)
    rmse, _, _ = aligned_pixel_neighbours(train_pixels[queries], train_pixels, max_shift=max_shift, flip=flip,
                                          query_groups=patients[queries], ref_groups=patients, device=device)
    return Calibration(quantile, float(np.quantile(sims, quantile)), float(np.quantile(rmse, 1.0 - quantile)),
                       sims, rmse, queries)


def nearest_training(
    features: np.ndarray,
    pixels: np.ndarray,
    train_features: np.ndarray,
    train_pixels: np.ndarray,
    calibration: Calibration,
    *,
    max_shift: int = DEFAULT_MAX_SHIFT,
    flip: bool = True,
    device: str | torch.device | None = "auto",
) -> pd.DataFrame:
    """Nearest training image of every image (features ``(N, D)``, pixels ``(N, S, S)`` float in [0, 1]) in both
    spaces, flagged against ``calibration``: one row per image, in order, with ``feature_nn`` (training index),
    ``feature_similarity``, ``pixel_nn``, ``pixel_rmse``, ``pixel_alignment`` (e.g. ``flip dy=+1 dx=+0``),
    ``flagged_feature``, ``flagged_pixel``, ``flagged`` (either) and ``closeness`` (the smaller of the two
    distances relative to their thresholds; below 1 means flagged)."""
    if len(features) != len(pixels) or len(train_features) != len(train_pixels):
        raise ValueError(f"features and pixels must describe the same images: {len(features)} vs {len(pixels)} "
                         f"(training: {len(train_features)} vs {len(train_pixels)})")
    centre = np.asarray(train_features, np.float32).mean(axis=0)
    sims, f_idx = feature_neighbours(features, train_features, centre, device=device)
    rmse, p_idx, variant = aligned_pixel_neighbours(pixels, train_pixels, max_shift=max_shift, flip=flip,
                                                    device=device)
    variants = pixel_variants(max_shift, flip)
    flagged_feature = sims > calibration.feature_threshold
    flagged_pixel = rmse < calibration.pixel_threshold
    feature_ratio = (1.0 - sims) / max(1.0 - calibration.feature_threshold, 1e-12)
    pixel_ratio = rmse / max(calibration.pixel_threshold, 1e-12)
    return pd.DataFrame({
        "feature_nn": f_idx, "feature_similarity": sims,
        "pixel_nn": p_idx, "pixel_rmse": rmse,
        "pixel_alignment": [_describe_variant(variants[v]) for v in variant],
        "flagged_feature": flagged_feature, "flagged_pixel": flagged_pixel,
        "flagged": flagged_feature | flagged_pixel,
        "closeness": np.maximum(np.minimum(feature_ratio, pixel_ratio), 0.0),
    })


@dataclass(frozen=True)
class MemorisationResult:
    """Per synthetic image (``frame``, one row each, in input order), the same for held-out real images
    (``real_frame``: the share a generator of new patients would get by chance), and the calibration."""

    frame: pd.DataFrame
    calibration: Calibration
    n_train: int
    max_shift: int
    flip: bool
    real_frame: pd.DataFrame | None = None


def memorisation_check(
    synthetic_features: np.ndarray,
    synthetic_pixels: np.ndarray,
    train_features: np.ndarray,
    train_pixels: np.ndarray,
    train_patients: Sequence[Any],
    *,
    real_features: np.ndarray | None = None,
    real_pixels: np.ndarray | None = None,
    quantile: float = DEFAULT_QUANTILE,
    n_calibration: int | None = DEFAULT_CALIBRATION_N,
    max_shift: int = DEFAULT_MAX_SHIFT,
    flip: bool = True,
    seed: int = 0,
    device: str | torch.device | None = "auto",
) -> MemorisationResult:
    """:func:`calibrate` on the training images, then :func:`nearest_training` for every synthetic image and,
    when given, every held-out real image (``real_*``: patients not in the training split).

    Features ``(N, D)`` / ``(M, D)``; pixels ``(N, S, S)`` / ``(M, S, S)`` float in [0, 1].
    """
    calibration = calibrate(train_features, train_pixels, train_patients, quantile=quantile,
                            n_calibration=n_calibration, max_shift=max_shift, flip=flip, seed=seed, device=device)
    search = {"max_shift": max_shift, "flip": flip, "device": device}
    frame = nearest_training(synthetic_features, synthetic_pixels, train_features, train_pixels, calibration,
                             **search)
    real_frame = None
    if real_features is not None and real_pixels is not None and len(real_features):
        real_frame = nearest_training(real_features, real_pixels, train_features, train_pixels, calibration,
                                      **search)
    return MemorisationResult(frame, calibration, len(train_features), max_shift, flip, real_frame)


def _describe_variant(variant: tuple[bool, int, int]) -> str:
    flipped, dy, dx = variant
    return f"{'flip ' if flipped else ''}dy={dy:+d} dx={dx:+d}"


def summary_row(result: MemorisationResult, mask: np.ndarray | None = None) -> dict[str, Any]:
    """Result-row columns: shares of flagged synthetic images (either space, and each) over the rows selected by
    ``mask`` (default all), the share of held-out real images flagged (``memorised_share_real``, the chance
    level), each with a Wilson 95% interval, thresholds and sample sizes."""
    frame = result.frame if mask is None else result.frame[np.asarray(mask, bool)]
    n = len(frame)
    flagged = int(frame["flagged"].sum())
    low, high = wilson_interval(flagged, n)
    cal = result.calibration
    real: dict[str, Any] = {}
    if result.real_frame is not None:
        n_real, flagged_real = len(result.real_frame), int(result.real_frame["flagged"].sum())
        real_low, real_high = wilson_interval(flagged_real, n_real)
        real = {"memorised_share_real": flagged_real / n_real if n_real else math.nan,
                "memorised_share_real_ci_low": real_low, "memorised_share_real_ci_high": real_high,
                "memorisation_n_real": n_real}
    by_space: dict[str, Any] = {}
    for space in ("feature", "pixel"):
        k = int(frame[f"flagged_{space}"].sum())
        space_low, space_high = wilson_interval(k, n)
        by_space.update({f"memorised_share_{space}": k / n if n else math.nan,
                         f"memorised_share_{space}_ci_low": space_low, f"memorised_share_{space}_ci_high": space_high})
    return {
        "memorised_share": flagged / n if n else math.nan,
        "memorised_share_ci_low": low, "memorised_share_ci_high": high,
        **by_space,
        "memorisation_n_synthetic": n,
        "memorisation_n_train": result.n_train,
        "memorisation_n_calibration": len(cal.query_indices),
        "memorisation_quantile": cal.quantile,
        "memorisation_feature_threshold": cal.feature_threshold,
        "memorisation_pixel_threshold": cal.pixel_threshold,
        "memorisation_pixel_alignment": f"flip={result.flip}, max_shift={result.max_shift}px",
        **real,
    }


def plot_closest_pairs(pairs: Sequence[tuple[np.ndarray, np.ndarray, str]], path: str | Path,
                       title: str = "Closest synthetic / training pairs") -> Path:
    """PNG grid, one row per pair: the synthetic image, its nearest training image and the caption beside them.

    ``pairs``: (synthetic ``(H, W)``, training ``(H', W')`` float in [0, 1], caption).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, len(pairs))
    fig, axes = plt.subplots(rows, 3, figsize=(8.0, 2.3 * rows), squeeze=False,
                             gridspec_kw={"width_ratios": [1.0, 1.0, 1.6]})
    for row, (synthetic, train, caption) in enumerate(pairs):
        for col, (image, label) in enumerate(((synthetic, "synthetic"), (train, "nearest training"))):
            ax = axes[row][col]
            ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(label, fontsize=8)
        axes[row][2].axis("off")
        axes[row][2].text(0.0, 0.5, caption, fontsize=7, va="center", ha="left", family="monospace")
    if not pairs:
        for ax in axes[0]:
            ax.axis("off")
        axes[0][1].text(0.5, 0.5, "no synthetic images", ha="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (2.3 * rows)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(result: MemorisationResult, folder: str | Path, synthetic_paths: Sequence[str | Path],
                 train_paths: Sequence[str | Path], train_patients: Sequence[Any], *,
                 load: Any, n_pairs: int = DEFAULT_GRID_PAIRS) -> dict[str, Path]:
    """Write ``memorisation.csv`` (one row per synthetic image, with file paths), ``memorisation.json`` (calibration
    and summary) and ``memorisation_closest.png`` (the ``n_pairs`` closest pairs) into ``folder``.

    ``load(path) -> (H, W) float in [0, 1]`` reads an image for the grid.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame = result.frame.copy()
    train_paths = [str(p) for p in train_paths]
    patients = [str(p) for p in train_patients]

    def pick(values: Sequence[str], index: np.ndarray) -> list[str]:
        return [values[i] if i >= 0 else "" for i in index]

    frame.insert(0, "synthetic_path", [str(p) for p in synthetic_paths])
    frame.insert(2, "feature_nn_path", pick(train_paths, frame["feature_nn"].to_numpy()))
    frame.insert(3, "feature_nn_patient", pick(patients, frame["feature_nn"].to_numpy()))
    frame.insert(6, "pixel_nn_path", pick(train_paths, frame["pixel_nn"].to_numpy()))
    frame.insert(7, "pixel_nn_patient", pick(patients, frame["pixel_nn"].to_numpy()))
    csv_path = folder / "memorisation.csv"
    frame.to_csv(csv_path, index=False)
    cal = result.calibration
    summary = {
        **summary_row(result),
        "calibration": {
            "pairs": "each calibration training image and its nearest training image of another patient",
            "feature_similarity_quantiles": {str(q): float(np.quantile(cal.feature_values, q))
                                             for q in (0.5, 0.9, 0.99, 1.0)},
            "pixel_rmse_quantiles": {str(q): float(np.quantile(cal.pixel_values, q)) for q in (0.0, 0.01, 0.1, 0.5)},
        },
        "feature_space": "cosine similarity of features centred on the training mean",
        "pixel_space": "RMSE of float [0,1] images, min over left-right flip and shifts, on the shared central crop",
    }
    json_path = folder / "memorisation.json"
    json_path.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    order = np.argsort(frame["closeness"].to_numpy(), kind="stable")[:n_pairs]
    pairs = []
    for i in order:
        row = frame.iloc[int(i)]
        by_pixel = row["closeness"] == row["pixel_rmse"] / max(cal.pixel_threshold, 1e-12)
        nn_path = row["pixel_nn_path"] if by_pixel else row["feature_nn_path"]
        if not nn_path:
            continue
        caption = (f"{Path(row['synthetic_path']).name}{' FLAGGED' if row['flagged'] else ''}\n"
                   f"cos {row['feature_similarity']:.4f} (thr {cal.feature_threshold:.4f})\n"
                   f"rmse {row['pixel_rmse']:.4f} (thr {cal.pixel_threshold:.4f}) {row['pixel_alignment']}\n"
                   f"nearest ({'pixels' if by_pixel else 'features'}): {Path(nn_path).name}")
        pairs.append((load(row["synthetic_path"]), load(nn_path), caption))
    png_path = plot_closest_pairs(pairs, folder / "memorisation_closest.png")
    return {"csv": csv_path, "json": json_path, "png": png_path}
