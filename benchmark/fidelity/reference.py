"""Shareable reference statistics: a real set's feature mean, covariance and sizes in one extractor's space, written
without any image, path or patient id (``--save-reference FILE``), and FID against them in place of the real images
(``--reference FILE``), so a team can publish "FID against MIMIC-CXR test, reference file X" and others reproduce it
without access to the images.

File: one ``.npz`` holding, per row (``overall`` and each class with at least 2 positives), ``mean`` ``(D,)`` and
``cov`` ``(D, D)`` (float64, unbiased), the number of images and of patients, and a JSON header: the format
(:data:`FORMAT`), the extractor's name, weights, full fingerprint, preprocessing and dimension, the real data set and
split, the classes, and how the file was made. A file is used only with an extractor of the same fingerprint and
preprocessing; anything else is refused, naming both.

Interval: the reference is a fixed published object, so FID's interval resamples the synthetic side only: a
delete-a-group jackknife over groups of whole synthetic clusters (source patient / prompt row), ``FID -+ t_{G-1} SE``.
It covers E[FID_N | reference], the expected FID of N synthetic images against *this* reference (not the spread a
new real sample would add). Figures that need the real images themselves (KID, precision / recall / density /
coverage, FD∞, the FID floor, memorisation, detectability) are not computed from a reference file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark import __version__
from benchmark.core.stats import cluster_codes
from benchmark.data import DataError
from benchmark.fidelity.distances import (
    DEFAULT_JACKKNIFE_GROUPS,
    MIN_JACKKNIFE_GROUPS,
    _t_quantile,
    balanced_groups,
    feature_statistics,
    frechet_distance,
    jackknife_se,
    resolve_device,
)

FORMAT = "synthcxr-reference/1"
CI_METHOD = ("FID against reference statistics: delete-a-group jackknife over {g} groups of whole synthetic "
             "{kind} clusters, the reference fixed, t with {df} df (covers the expected FID of N synthetic images "
             "against this reference)")
NOT_FROM_REFERENCE = ("from reference statistics: FID only (KID, precision / recall / density / coverage, FD∞, the "
                      "FID floor, memorisation and detectability need the real images)")


@dataclass(frozen=True)
class ReferenceStats:
    """One row's statistics: ``mean`` ``(D,)``, ``cov`` ``(D, D)`` (float64), ``n`` images of ``n_patients``."""

    mean: np.ndarray
    cov: np.ndarray
    n: int
    n_patients: int


@dataclass(frozen=True)
class Reference:
    """A loaded reference file: its ``header`` (extractor, data set, split, classes, provenance), its ``rows``
    (``overall`` and classes), its ``path`` and the file's SHA-256 (``sha256``)."""

    header: dict[str, Any]
    rows: dict[str, ReferenceStats]
    path: Path
    sha256: str

    @property
    def label(self) -> str:
        """Short name used in result rows: ``<file stem>@<first 8 hex of its SHA-256>``."""
        return f"{self.path.stem}@{self.sha256[:8]}"


def reference_statistics(features: Any, patients: Sequence[Any] | np.ndarray | None = None) -> ReferenceStats:
    """Statistics of real ``features`` ``(N, D)`` (N >= 2) and how many patients (None: one per image) they hold."""
    mean, cov = feature_statistics(features)
    n = int(np.asarray(features).shape[0])
    return ReferenceStats(mean, cov, n, int(cluster_codes(patients, n).max()) + 1)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_reference(path: str | Path, rows: Mapping[str, ReferenceStats], header: Mapping[str, Any]) -> Path:
    """Write ``rows`` and ``header`` (must name ``extractor``: :meth:`FeatureExtractor.describe`) to ``path`` (.npz),
    atomically (a failed write leaves any earlier file as it was). Returns the path written."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    if "overall" not in rows:
        raise ValueError("a reference needs an 'overall' row")
    names = list(rows)
    full = {"format": FORMAT, **header, "rows": {name: {"n": rows[name].n, "n_patients": rows[name].n_patients}
                                                 for name in names}, "harness_version": __version__}
    arrays: dict[str, np.ndarray] = {"header": np.array(json.dumps(full, sort_keys=True))}
    for i, name in enumerate(names):
        arrays[f"mean_{i}"] = np.asarray(rows[name].mean, dtype=np.float64)
        arrays[f"cov_{i}"] = np.asarray(rows[name].cov, dtype=np.float64)
    arrays["row_names"] = np.array(names)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def load_reference(path: str | Path) -> Reference:
    """Read a file :func:`save_reference` wrote; a missing, foreign or damaged file stops with a
    :class:`DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: reference statistics file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            names = [str(n) for n in data["row_names"]]
            rows = {name: ReferenceStats(np.array(data[f"mean_{i}"]), np.array(data[f"cov_{i}"]),
                                         int(header["rows"][name]["n"]), int(header["rows"][name]["n_patients"]))
                    for i, name in enumerate(names)}
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a reference statistics file ({type(exc).__name__}: {exc})") from None
    if header.get("format") != FORMAT:
        raise DataError(f"{path}: format {header.get('format')!r}, this harness reads {FORMAT!r}")
    dim = int(header["extractor"]["dim"])
    for name, stats in rows.items():
        if stats.mean.shape != (dim,) or stats.cov.shape != (dim, dim):
            raise DataError(f"{path}: row {name!r} has statistics of shape {stats.mean.shape} / {stats.cov.shape}, "
                            f"not ({dim},) / ({dim}, {dim})")
    return Reference(header, rows, path, _sha256(path))


def check_extractor(reference: Reference, extractor: Mapping[str, Any]) -> None:
    """Refuse ``reference`` unless it was made in the feature space ``extractor`` (``describe()``) computes: the same
    fingerprint (weights) and preprocessing. The error names both."""
    saved = reference.header["extractor"]
    for field_name in ("fingerprint", "preprocessing"):
        if saved.get(field_name) != extractor.get(field_name):
            raise DataError(
                f"{reference.path}: made with features {saved.get('name')!r} ({field_name} "
                f"{str(saved.get(field_name))[:64]!r}), but the extractor in use is {extractor.get('name')!r} "
                f"({field_name} {str(extractor.get(field_name))[:64]!r}); FID is only comparable in one feature "
                "space: use the extractor, weights and --image-size the file was made with")


def reference_fid(stats: ReferenceStats, fake: Any, *, fake_clusters: Sequence[Any] | np.ndarray | None = None,
                  fake_cluster_kind: str = "image", n_groups: int = DEFAULT_JACKKNIFE_GROUPS, seed: int = 0,
                  confidence: float = 0.95, device: str | torch.device | None = "auto") -> dict[str, Any]:
    """FID of synthetic features ``fake`` ``(M, D)`` against ``stats``, with its jackknife interval over the synthetic
    clusters (the reference fixed), as result-row columns: ``fid``, ``fid_ci_low`` / ``fid_ci_high``, ``fid_se``,
    ``jackknife_groups``, ``n_real`` (the reference's N), ``n_real_clusters``, ``n_synthetic``,
    ``n_synthetic_clusters``, ``ci_method``, ``notes``."""
    x = np.asarray(fake, dtype=np.float64)
    m = x.shape[0]
    if x.ndim != 2 or x.shape[1] != stats.mean.shape[0]:
        raise ValueError(f"synthetic features {x.shape} do not match the reference's {stats.mean.shape[0]} dims")
    if m < 2:
        raise ValueError("FID needs at least 2 synthetic images")
    dev = resolve_device(device)
    codes = cluster_codes(fake_clusters, m)
    k = int(codes.max()) + 1
    mean, cov = feature_statistics(x)
    value = frechet_distance(stats.mean, stats.cov, mean, cov, device=dev)
    row: dict[str, Any] = {"fid": value, "n_real": stats.n, "n_real_clusters": stats.n_patients, "n_synthetic": m,
                           "n_synthetic_clusters": k}
    g = min(int(n_groups), k)
    if g < MIN_JACKKNIFE_GROUPS:
        row.update({"fid_ci_low": math.nan, "fid_ci_high": math.nan, "fid_se": math.nan, "jackknife_groups": 0,
                    "ci_method": "FID against reference statistics: no interval",
                    "notes": f"no FID interval: {k} synthetic clusters, the jackknife needs {MIN_JACKKNIFE_GROUPS}"})
        return row
    groups = balanced_groups(codes, g, [seed, 2])
    centred = x - mean
    scatter = centred.T @ centred
    leave_out = np.full(g, math.nan)
    for j in range(g):
        dropped = centred[groups == j]
        kept = m - len(dropped)
        if kept < 2:
            continue
        total = dropped.sum(axis=0)
        kept_cov = (scatter - dropped.T @ dropped - np.outer(total, total) / kept) / (kept - 1)
        leave_out[j] = frechet_distance(stats.mean, stats.cov, mean - total / kept, kept_cov, device=dev)
    se = jackknife_se(leave_out)
    half = _t_quantile(confidence, g - 1) * se
    row.update({"fid_ci_low": max(0.0, value - half), "fid_ci_high": value + half, "fid_se": se,
                "jackknife_groups": g, "ci_method": CI_METHOD.format(g=g, kind=fake_cluster_kind, df=g - 1),
                "notes": "" if math.isfinite(se) else "no FID interval: a jackknife group held nearly all images"})
    return row
