"""Precision, recall, density and coverage (Naeem et al. 2020, k = 5) of a synthetic feature set against a real
one, exact at any scale, and their intervals.

Each real-synthetic distance is computed once, in blocks on the device (the chunked nearest-neighbour search of
:mod:`benchmark.fidelity.distances`), and ties with a ball's radius are decided again in float64. Precision, recall
and coverage get a Wilson interval on the cluster-effective n (coverage's design effect also from the jackknife of
:func:`benchmark.fidelity.distances.jackknife_groups`), density a cluster-bootstrap percentile interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmark.core.stats import cluster_bootstrap_weights, proportion_design_effect, wilson_interval
from benchmark.fidelity.distances import (
    DEFAULT_QUERY_CHUNK,
    DEFAULT_REF_CHUNK,
    _check_features,
    _numpy,
    _sq_dists,
    _tensor,
    chunked_knn,
    jackknife_se,
    resolve_device,
)

DENSITY_RESAMPLES = 2000


@dataclass(frozen=True)
class PRDC:
    """PRDC figures and the per-sample quantities behind them (for intervals and inspection).

    ``fake_counts`` ``(M,)``: how many real k-NN balls contain each synthetic sample; ``real_recalled`` ``(N,)``:
    whether a synthetic k-NN ball contains each real sample; ``real_covered`` ``(N,)``: whether each real ball
    contains a synthetic sample; ``coverage_leave_out`` ``(G,)`` (with ``real_groups``): coverage of the real
    samples outside group g, their radii found again without group g.
    """

    precision: float
    recall: float
    density: float
    coverage: float
    k: int
    fake_counts: np.ndarray
    real_recalled: np.ndarray
    real_covered: np.ndarray
    coverage_leave_out: np.ndarray | None = None


_EXACT_ROWS = 4096
_SPARE_NEIGHBOURS = 16  # neighbours kept beyond k + 1 so that dropping a jackknife group rarely empties the list


def _exact_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distances ``(P,)`` float64 between paired rows of ``a`` and ``b`` ``(P, D)``, summed from the
    differences (no ``|a|^2 + |b|^2 - 2ab`` expansion): the same two rows give the same bits wherever they sit,
    and ``(a, b)`` the same bits as ``(b, a)``."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return np.square(diff).sum(axis=1)


def _exact_radii2(x: np.ndarray, k: int, index: np.ndarray) -> np.ndarray:
    """Squared distance ``(N,)`` float64 from each row of ``x`` ``(N, D)`` to its k-th nearest other row (the
    (k+1)-th smallest including itself, as in Naeem et al.'s code): ``index`` ``(N, m)`` holds each row's nearest
    rows from the blocked search; the first k + 3 have their distances summed exactly (:func:`_exact_sq`) and
    sorted."""
    m = min(index.shape[1], k + 3)
    out = np.empty(len(x), dtype=np.float64)
    for r0 in range(0, len(x), _EXACT_ROWS):
        rows = x[r0:r0 + _EXACT_ROWS]
        d2 = np.stack([_exact_sq(rows, x[index[r0:r0 + _EXACT_ROWS, j]]) for j in range(m)], axis=1)
        out[r0:r0 + len(rows)] = np.sort(d2, axis=1)[:, k]
    return out


def _coverage_without_each_group(real: np.ndarray, dist: np.ndarray, index: np.ndarray, fake_min: np.ndarray,
                                 k: int, groups: np.ndarray, chunks: dict[str, Any]) -> np.ndarray:
    """Coverage ``(G,)`` of the real rows outside group g, each with its k-NN radius among the real rows outside
    group g: the (k+1)-th entry of its neighbour list ``dist`` / ``index`` ``(N, m)`` once group g's rows are
    skipped (searched again for the rare row whose list runs out). ``fake_min`` ``(N,)``: each real row's nearest
    synthetic distance."""
    n = len(real)
    rows = np.arange(n)
    neighbour_groups = groups[index]
    out = np.empty(int(groups.max()) + 1)
    for g in range(out.size):
        keep = groups != g
        kept_so_far = np.cumsum(neighbour_groups != g, axis=1)
        radius = dist[rows, np.argmax(kept_so_far >= k + 1, axis=1)]
        short = np.flatnonzero(keep & (kept_so_far[:, -1] < k + 1))
        if short.size:
            radius[short] = chunked_knn(real[short], real[keep], k + 1, metric="euclidean", **chunks)[0][:, k]
        out[g] = float(np.mean(fake_min[keep] < radius[keep]))
    return out


def prdc(
    real: Any,
    fake: Any,
    k: int = 5,
    *,
    real_groups: np.ndarray | None = None,
    device: str | torch.device | None = "auto",
    dtype: torch.dtype = torch.float32,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    ref_chunk: int = DEFAULT_REF_CHUNK,
) -> PRDC:
    """Precision, recall, density and coverage of ``fake`` ``(M, D)`` against ``real`` ``(N, D)`` (Naeem et al.
    2020), with k-NN radii from each set and strict ``<`` comparisons as in their reference code.

    precision = share of fake samples inside some real ball; recall = share of real samples inside some fake
    ball; density = (1/kM) * sum over fakes of the number of real balls containing it; coverage = share of real
    balls containing at least one fake. Each real-fake distance is computed once (blocked, in ``dtype``) and used
    for all four. A pair whose distance lies within rounding of a ball's radius is decided again in float64 from
    the feature differences, the radii too, so ties are ties: a synthetic set of exact copies of the real set has
    density 1.000 (each real ball strictly holds itself and k - 1 others; the k-th neighbour lies on the boundary).
    Needs more than ``k`` rows per set. ``real_groups`` ``(N,)`` (jackknife groups of whole patients,
    :func:`jackknife_groups`): also the coverage without each group (``PRDC.coverage_leave_out``), for the
    design effect of coverage, whose real balls depend on each other through their radii.
    """
    _check_features(real, "real")
    _check_features(fake, "fake")
    if real.shape[0] <= k or fake.shape[0] <= k:
        raise ValueError(f"PRDC with k={k} needs more than {k} real and synthetic samples "
                         f"(got {real.shape[0]} and {fake.shape[0]})")
    chunks = {"device": device, "dtype": dtype, "query_chunk": query_chunk, "ref_chunk": ref_chunk}
    dev = resolve_device(device)
    real_np, fake_np = _numpy(real), _numpy(fake)
    spare = _SPARE_NEIGHBOURS if real_groups is not None else 2
    real_dist, real_index = chunked_knn(real_np, real_np, min(len(real_np), k + 1 + spare), **chunks)
    real_r2 = _exact_radii2(real_np, k, real_index)
    fake_r2 = _exact_radii2(fake_np, k, chunked_knn(fake_np, fake_np, min(len(fake_np), k + 3), **chunks)[1])
    r = _tensor(real_np, dev, dtype)
    centre = r.mean(dim=0, keepdim=True)
    r = r - centre
    r_sq = (r * r).sum(dim=1)
    real_r2_t = torch.as_tensor(real_r2, device=dev, dtype=dtype)
    fake_r2_t = torch.as_tensor(fake_r2, device=dev, dtype=dtype)
    # expansion round-off is a few ulps of |a|^2 + |b|^2 per sqrt(D) terms: anything nearer a radius is re-decided
    slack = 16.0 * math.sqrt(real_np.shape[1]) * torch.finfo(dtype).eps
    n_real, n_fake = int(real.shape[0]), int(fake.shape[0])
    counts = torch.zeros(n_fake, dtype=torch.int64, device=dev)
    covered = torch.zeros(n_real, dtype=torch.bool, device=dev)
    recalled = torch.zeros(n_real, dtype=torch.bool, device=dev)
    fake_min2 = torch.full((n_real,), math.inf, dtype=dtype, device=dev)
    for f0 in range(0, n_fake, query_chunk):
        fq = _tensor(fake_np[f0:f0 + query_chunk], dev, dtype) - centre
        f_sq = (fq * fq).sum(dim=1)
        f_r2 = fake_r2_t[f0:f0 + query_chunk, None]
        for r0 in range(0, n_real, ref_chunk):
            d2 = _sq_dists(fq, r[r0:r0 + ref_chunk], f_sq, r_sq[r0:r0 + ref_chunk])  # (fakes, reals)
            r_r2 = real_r2_t[None, r0:r0 + d2.shape[1]]
            tol = (f_sq[:, None] + r_sq[None, r0:r0 + d2.shape[1]]).mul_(slack)
            in_real, in_fake = d2 < r_r2, d2 < f_r2
            near = ((d2 - r_r2).abs_() <= tol).logical_or_((d2 - f_r2).abs_() <= tol)
            qi, ri = near.nonzero(as_tuple=True)
            if qi.numel():
                qn, rn = qi.cpu().numpy() + f0, ri.cpu().numpy() + r0
                exact = _exact_sq(fake_np[qn], real_np[rn])
                in_real[qi, ri] = torch.as_tensor(exact < real_r2[rn], device=dev)
                in_fake[qi, ri] = torch.as_tensor(exact < fake_r2[qn], device=dev)
            block = slice(r0, r0 + d2.shape[1])
            counts[f0:f0 + fq.shape[0]] += in_real.sum(dim=1)
            covered[block] |= in_real.any(dim=0)
            recalled[block] |= in_fake.any(dim=0)
            fake_min2[block] = torch.minimum(fake_min2[block], d2.min(dim=0).values)
    counts_np = counts.cpu().numpy()
    recalled_np = recalled.cpu().numpy()
    covered_np = covered.cpu().numpy()
    leave_out = None
    if real_groups is not None:
        fake_min = np.sqrt(fake_min2.double().cpu().numpy())
        leave_out = _coverage_without_each_group(real_np, real_dist, real_index, fake_min, k,
                                                 np.asarray(real_groups, dtype=np.int64), chunks)
    return PRDC(
        precision=float((counts_np > 0).mean()),
        recall=float(recalled_np.mean()),
        density=float(counts_np.sum() / (k * n_fake)),
        coverage=float(covered_np.mean()),
        k=k,
        fake_counts=counts_np,
        real_recalled=recalled_np,
        real_covered=covered_np,
        coverage_leave_out=leave_out,
    )



# ----------------------------------------------------------------------------------------------------
# Intervals of density and coverage
# ----------------------------------------------------------------------------------------------------


def density_interval(per_fake: np.ndarray, clusters: Sequence[Any] | np.ndarray | None = None,
                     n_resamples: int = DENSITY_RESAMPLES, seed: int = 0,
                     confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of density, the mean of ``per_fake`` ``(M,)`` (each synthetic image's count of real balls
    holding it, over k), by a bootstrap of the synthetic clusters ``(M,)`` (None: images). Never below 0."""
    values = np.asarray(per_fake, dtype=np.float64).ravel()
    if values.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng([seed, 5101])
    boot = np.concatenate([w @ values / w.sum(axis=1) for w in cluster_bootstrap_weights(
        np.zeros(values.size, dtype=np.int8), clusters, n_resamples, rng, stratified=False)])
    low, high = np.percentile(boot, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(low), float(high)


def coverage_interval(result: PRDC, clusters: Sequence[Any] | np.ndarray | None = None,
                      confidence: float = 0.95) -> tuple[float, float]:
    """Wilson interval of coverage on the effective number of real images ``N / deff``.

    A real ball's radius depends on the other real images, so whether two balls are covered is not independent
    even across patients: the binomial variance, even over patients, is too small (coverage of a 95% Wilson
    interval 0.86-0.91 in simulation). ``deff`` is the larger of the patients' design effect and the jackknife
    variance of coverage (``result.coverage_leave_out``) over the binomial one; at coverage 0 or 1 only the
    patients' (largest-possible) design effect is used."""
    hits = result.real_covered
    n = hits.size
    c = result.coverage
    deff = proportion_design_effect(hits, clusters)
    if result.coverage_leave_out is not None and 0.0 < c < 1.0:
        deff = max(deff, jackknife_se(result.coverage_leave_out) ** 2 / (c * (1 - c) / n))
    return wilson_interval(c * n / deff, n / deff, confidence)
