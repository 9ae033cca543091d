"""KID (Bińkowski et al. 2018) of a synthetic feature set against a real one on random subsets: the unbiased
polynomial-kernel MMD^2 per subset, and the delete-a-group jackknife interval of its mean (groups:
:func:`benchmark.fidelity.distances.jackknife_groups`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmark.fidelity.distances import _check_features, _t_quantile, _tensor, jackknife_se, resolve_device


@dataclass(frozen=True)
class KID:
    """KID over random subsets: mean and (population) std of the per-subset unbiased MMD^2 estimates ``values``
    ``(n_subsets,)``; ``leave_out`` ``(G,)``: the mean over the same subsets without jackknife group g (None
    without groups), for the interval of the mean (:func:`kid_interval`)."""

    mean: float
    std: float
    values: np.ndarray
    subset_size: int
    leave_out: np.ndarray | None = None


def kid_subsets(n_real: int, n_fake: int, subset_size: int, n_subsets: int,
                seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_subsets`` pairs of index arrays, each drawn without replacement and independently of the other
    subsets: ``subset_size`` real indices and ``subset_size`` synthetic ones.

    When ``subset_size`` would take the whole of the smaller set, subsets are half of it instead (at least 2):
    subsets of the whole set would all be that set, so their spread (``kid_std``) would be 0 whatever the data.
    The unbiased MMD^2 has the same expectation at any subset size, so KID's mean is the same estimate; its spread
    is that of half-size subsets, wider than the full set's."""
    smaller = min(n_real, n_fake)
    if smaller < 2:
        raise ValueError(f"KID needs at least 2 samples per set (got {n_real} and {n_fake})")
    m = subset_size if subset_size < smaller else max(2, smaller // 2)
    rng = np.random.default_rng([seed, 7717])
    return [(rng.choice(n_real, m, replace=False), rng.choice(n_fake, m, replace=False)) for _ in range(n_subsets)]


def _kernels(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Polynomial kernel matrices ``K_xx`` ``(m, m)``, ``K_yy`` ``(n, n)``, ``K_xy`` ``(m, n)``,
    ``k(a, b) = (a.b / D + 1)^3``."""
    def kernel(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (u @ v.T / u.shape[1] + 1) ** 3

    return kernel(x, x), kernel(y, y), kernel(x, y)


def _mmd2(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor) -> float:
    m, n = k_xx.shape[0], k_yy.shape[0]
    xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    yy = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(xx + yy - 2 * k_xy.sum() / (m * n))


def polynomial_mmd2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 between ``x`` ``(m, D)`` and ``y`` ``(n, D)`` with the kernel ``k(a, b) = (a.b / D + 1)^3``."""
    return _mmd2(*_kernels(x, y))


def _mmd2_without_each_group(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor, gx: torch.Tensor,
                             gy: torch.Tensor, g: int) -> torch.Tensor:
    """Unbiased MMD^2 ``(G,)`` from the kernel matrices of ``x`` ``(m, D)`` and ``y`` ``(n, D)``
    (:func:`_kernels`) without the rows of group j on both sides, for each j (``gx`` ``(m,)``, ``gy`` ``(n,)``;
    the kept sizes differ; NaN where a side keeps fewer than 2 rows).

    The kernel sums are accumulated once per (group, group) block with one-hot matrices ``P`` ``(m, G)`` and ``Q``:
    ``P^T K_xx P`` etc.; each leave-one-group-out statistic is then arithmetic on those G x G sums."""
    p = torch.nn.functional.one_hot(gx, g).to(k_xx.dtype)
    q = torch.nn.functional.one_hot(gy, g).to(k_xx.dtype)

    def within(k: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        blocks = onehot.T @ k @ onehot
        diag = onehot.T @ k.diagonal()
        kept_all = blocks.sum() - 2 * blocks.sum(dim=1) + blocks.diagonal()  # pairs with neither row in group j
        kept = onehot.shape[0] - onehot.sum(dim=0)
        return (kept_all - (diag.sum() - diag)) / (kept * (kept - 1)), kept

    xx, kept_x = within(k_xx, p)
    yy, kept_y = within(k_yy, q)
    cross = p.T @ k_xy @ q
    xy = cross.sum() - cross.sum(dim=1) - cross.sum(dim=0) + cross.diagonal()
    out = xx + yy - 2 * xy / (kept_x * kept_y)
    return torch.where((kept_x >= 2) & (kept_y >= 2), out, torch.full_like(out, math.nan))


def kid(real: Any, fake: Any, subset_size: int = 1000, n_subsets: int = 100, seed: int = 0,
        device: str | torch.device | None = "auto", *,
        groups: tuple[np.ndarray, np.ndarray] | None = None) -> KID:
    """KID of ``fake`` against ``real`` (features ``(N, D)``, ``(M, D)``) on :func:`kid_subsets`.

    ``groups`` (jackknife groups ``(N,)`` and ``(M,)``, :func:`jackknife_groups`): also the KID without each group,
    from the same subsets less that group's rows (``KID.leave_out``)."""
    _check_features(real, "real")
    _check_features(fake, "fake")
    dev = resolve_device(device)
    a = _tensor(real, dev, torch.float64)
    b = _tensor(fake, dev, torch.float64)
    subsets = kid_subsets(a.shape[0], b.shape[0], subset_size, n_subsets, seed)
    values = np.empty(len(subsets))
    leave_out = None
    if groups is not None:
        ga, gb = (torch.as_tensor(np.asarray(x, dtype=np.int64), device=dev) for x in groups)
        g = int(max(int(ga.max()), int(gb.max()))) + 1
        leave_out = torch.zeros(g, dtype=torch.float64, device=dev)
    for s, (i, j) in enumerate(subsets):
        ti, tj = torch.as_tensor(i, device=dev), torch.as_tensor(j, device=dev)
        kernels = _kernels(a[ti], b[tj])
        values[s] = _mmd2(*kernels)
        if leave_out is not None:
            leave_out += _mmd2_without_each_group(*kernels, ga[ti], gb[tj], g)
    mean_out = None if leave_out is None else (leave_out / len(subsets)).cpu().numpy()
    return KID(float(values.mean()), float(values.std()), values, len(subsets[0][0]), mean_out)


def kid_interval(result: KID, confidence: float = 0.95) -> tuple[float, float]:
    """Interval of the KID mean: ``mean -+ t_{G-1} SE`` with the delete-a-group jackknife SE of the
    leave-one-group-out KIDs (NaNs without them)."""
    if result.leave_out is None or result.leave_out.size < 2:
        return math.nan, math.nan
    half = _t_quantile(confidence, result.leave_out.size - 1) * jackknife_se(result.leave_out)
    return result.mean - half, result.mean + half


def chexgenbench_kid(real: np.ndarray, fake: np.ndarray, *, n_subsets: int = 100, seed: int = 0,
                     device: str = "auto") -> dict[str, Any]:
    """KID as CheXGenBench computes it (torchmetrics ``KernelInceptionDistance`` with ``subset_size`` = the smaller
    set's size, 100 subsets): columns ``chexgenbench_kid_mean`` / ``_std`` / ``_subset_size``. Each subset takes the
    whole of the smaller set, so where the sets are of equal size every subset is the same and the std is 0."""
    dev = resolve_device(device)
    a, b = _tensor(real, dev, torch.float64), _tensor(fake, dev, torch.float64)
    m = min(len(a), len(b))
    rng = np.random.default_rng([seed, 7718])
    values = [polynomial_mmd2(a[torch.as_tensor(rng.permutation(len(a))[:m], device=dev)],
                              b[torch.as_tensor(rng.permutation(len(b))[:m], device=dev)]) for _ in range(n_subsets)]
    return {"chexgenbench_kid_mean": float(np.mean(values)), "chexgenbench_kid_std": float(np.std(values)),
            "chexgenbench_kid_subset_size": m}
