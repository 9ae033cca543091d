"""Fidelity metrics between a real and a synthetic feature set, exact at any scale.

Owns the distance-based metrics of the image-quality stage: the Fréchet distance (FID; "FID (XRV)" / FXD in
torchxrayvision's DenseNet space) with a bootstrap confidence interval, KID on proper random subsets (mean and
std), precision / recall / density / coverage (Naeem et al. 2020, k = 5), and the chunked nearest-neighbour search
they (and :mod:`benchmark.memorisation`) are built on.

Every function takes feature arrays ``(N, D)`` (float32 or float64 numpy arrays or tensors) and returns numbers or
arrays; nothing is cached between calls. Nearest neighbours and PRDC are computed in blocks of at most
``query_chunk x ref_chunk`` distances on ``device`` (a GPU when present), so the full ``N x M`` distance matrix is
never held: 75,000 x 75,000 features of 1,024 dims fit in a few hundred MB beyond the features themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

Metric = Literal["euclidean", "cosine"]
DEFAULT_QUERY_CHUNK = 2048
DEFAULT_REF_CHUNK = 8192
Z_95 = 1.959963984540054


# ----------------------------------------------------------------------------------------------------
# Devices, tensors, sampling
# ----------------------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` / None: the first CUDA device when present, else the CPU; anything else as given."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _tensor(x: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def _check_features(x: Any, name: str) -> None:
    shape = tuple(x.shape)
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty feature array (N, D), got shape {shape}")


def subsample_indices(n_items: int, n: int | None, seed: int) -> np.ndarray:
    """Sorted int64 indices of ``n`` of ``n_items`` items drawn without replacement (all of them when ``n`` is
    None or not smaller than ``n_items``); deterministic for ``seed``."""
    if n is None or n >= n_items:
        return np.arange(n_items, dtype=np.int64)
    if n < 1:
        raise ValueError(f"cannot subsample to n={n}")
    return np.sort(np.random.default_rng(seed).choice(n_items, size=n, replace=False)).astype(np.int64)


def wilson_interval(successes: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``successes / n`` (NaNs when ``n`` is 0)."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1.0 + Z_95**2 / n
    centre = (p + Z_95**2 / (2 * n)) / denom
    half = Z_95 * math.sqrt(p * (1 - p) / n + Z_95**2 / (4 * n * n)) / denom
    low = 0.0 if successes <= 0 else max(0.0, centre - half)  # exact at the ends, not a rounding error away
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return low, high


def mean_interval(values: np.ndarray) -> tuple[float, float]:
    """Normal-approximation 95% interval of the mean of ``values`` (1-d); NaNs with fewer than 2 values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return math.nan, math.nan
    half = Z_95 * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean() - half), float(values.mean() + half)


# ----------------------------------------------------------------------------------------------------
# Chunked nearest neighbours
# ----------------------------------------------------------------------------------------------------


def _sq_dists(a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(len(a), len(b))``, clamped at 0; one block-sized allocation."""
    block = torch.addmm(b_sq[None, :], a, b.T, alpha=-2.0)
    return block.add_(a_sq[:, None]).clamp_min_(0.0)


class NeighbourIndex:
    """A reference set prepared once for blocked nearest-neighbour searches (:meth:`search`).

    ``ref`` ``(M, D)``; ``metric="euclidean"`` (data centred on the reference mean, which keeps float32
    cancellation small) or ``"cosine"`` (rows L2-normalised). ``ref_groups`` (one id per row, e.g. patient ids)
    lets a search exclude pairs whose query and reference share an id. The prepared copy lives on ``device``.
    """

    def __init__(self, ref: Any, metric: Metric = "euclidean", *, ref_groups: Sequence[Any] | np.ndarray | None = None,
                 device: str | torch.device | None = "auto", dtype: torch.dtype = torch.float32,
                 ref_chunk: int = DEFAULT_REF_CHUNK):
        _check_features(ref, "ref")
        if metric not in ("euclidean", "cosine"):
            raise ValueError(f"unknown metric {metric!r}; use 'euclidean' or 'cosine'")
        self.metric = metric
        self.device = resolve_device(device)
        self.dtype = dtype
        self.ref_chunk = int(ref_chunk)
        r = _tensor(ref, self.device, dtype)
        if metric == "euclidean":
            self.centre: torch.Tensor | None = r.mean(dim=0, keepdim=True)
            self.data = r - self.centre
            self.sq: torch.Tensor | None = (self.data * self.data).sum(dim=1)
        else:
            self.centre = None
            self.data = torch.nn.functional.normalize(r, dim=1)
            self.sq = None
        self.groups: dict[str, int] | None = None
        self.group_codes: torch.Tensor | None = None
        if ref_groups is not None:
            ids = np.asarray(ref_groups).astype(str)
            if len(ids) != self.data.shape[0]:
                raise ValueError(f"ref_groups has {len(ids)} ids for {self.data.shape[0]} rows")
            uniques, codes = np.unique(ids, return_inverse=True)
            self.groups = {g: i for i, g in enumerate(uniques.tolist())}
            self.group_codes = torch.as_tensor(codes, device=self.device)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def _query_codes(self, query_groups: Sequence[Any] | np.ndarray, n: int) -> torch.Tensor:
        if self.groups is None:
            raise ValueError("query_groups given but the index was built without ref_groups")
        ids = np.asarray(query_groups).astype(str)
        if len(ids) != n:
            raise ValueError(f"query_groups has {len(ids)} ids for {n} rows")
        return torch.as_tensor([self.groups.get(g, -1) for g in ids.tolist()], device=self.device)

    def search(self, query: Any, k: int = 1, *, query_groups: Sequence[Any] | np.ndarray | None = None,
               query_chunk: int = DEFAULT_QUERY_CHUNK) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest reference rows of every ``query`` row ``(N, D)``.

        Returns values ``(N, k)`` float64 (euclidean: distances, ascending; cosine: similarities, descending) and
        indices ``(N, k)`` int64. With ``query_groups``, reference rows of the query's own group are skipped; a
        query with fewer than ``k`` eligible rows gets index -1 and value ``inf`` (euclidean) or ``-inf`` (cosine).
        Memory beyond the inputs: one ``query_chunk x ref_chunk`` block.
        """
        _check_features(query, "query")
        if query.shape[1] != self.data.shape[1]:
            raise ValueError(f"query has {query.shape[1]} dims but the reference has {self.data.shape[1]}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        n_query = int(query.shape[0])
        codes = self._query_codes(query_groups, n_query) if query_groups is not None else None
        out_values = np.empty((n_query, k), dtype=np.float64)
        out_index = np.empty((n_query, k), dtype=np.int64)
        for q0 in range(0, n_query, query_chunk):
            q = _tensor(query[q0:q0 + query_chunk], self.device, self.dtype)
            best_s, best_i = self._search_block(q, k, None if codes is None else codes[q0:q0 + query_chunk])
            values = best_s.double().cpu().numpy()
            if self.metric == "euclidean":
                values = np.sqrt(-values)  # -(-inf) = inf for missing neighbours
            out_values[q0:q0 + q.shape[0]] = values
            out_index[q0:q0 + q.shape[0]] = best_i.cpu().numpy()
        return out_values, out_index

    def _search_block(self, q: torch.Tensor, k: int,
                      codes: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (higher = nearer; euclidean: minus squared distance) and indices ``(len(q), k)`` on the device."""
        if self.metric == "euclidean":
            q = q - self.centre
            q_sq = (q * q).sum(dim=1)
        else:
            q = torch.nn.functional.normalize(q, dim=1)
        best_s = torch.full((q.shape[0], k), -math.inf, device=self.device, dtype=self.dtype)
        best_i = torch.full((q.shape[0], k), -1, device=self.device, dtype=torch.int64)
        for r0 in range(0, len(self), self.ref_chunk):
            rb = self.data[r0:r0 + self.ref_chunk]
            if self.metric == "euclidean":
                score = _sq_dists(q, rb, q_sq, self.sq[r0:r0 + self.ref_chunk]).neg_()
            else:
                score = q @ rb.T
            if codes is not None:
                score.masked_fill_(codes[:, None] == self.group_codes[None, r0:r0 + self.ref_chunk], -math.inf)
            top_s, top_i = score.topk(min(k, rb.shape[0]), dim=1)
            cand_s = torch.cat([best_s, top_s], dim=1)
            cand_i = torch.cat([best_i, top_i + r0], dim=1)
            best_s, pos = cand_s.topk(k, dim=1)
            best_i = cand_i.gather(1, pos)
        best_i[torch.isneginf(best_s)] = -1
        return best_s, best_i


def chunked_knn(
    query: Any,
    ref: Any,
    k: int = 1,
    *,
    metric: Metric = "euclidean",
    query_groups: Sequence[Any] | np.ndarray | None = None,
    ref_groups: Sequence[Any] | np.ndarray | None = None,
    device: str | torch.device | None = "auto",
    dtype: torch.dtype = torch.float32,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    ref_chunk: int = DEFAULT_REF_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``ref`` ``(M, D)`` for every row of ``query`` ``(N, D)``, in blocks, never
    holding the ``N x M`` matrix (see :class:`NeighbourIndex`).

    ``metric="euclidean"``: distances ``(N, k)`` float64, ascending. ``metric="cosine"``: cosine similarities
    ``(N, k)`` float64, descending. Indices ``(N, k)`` int64 into ``ref``. When ``query_groups`` and
    ``ref_groups`` (e.g. patient ids) are given, pairs with equal ids are never neighbours.
    """
    if (query_groups is None) != (ref_groups is None):
        raise ValueError("give both query_groups and ref_groups, or neither")
    _check_features(query, "query")
    index = NeighbourIndex(ref, metric, ref_groups=ref_groups, device=device, dtype=dtype, ref_chunk=ref_chunk)
    return index.search(query, k, query_groups=query_groups, query_chunk=query_chunk)


def knn_radii(features: Any, k: int = 5, **kwargs: Any) -> np.ndarray:
    """Distance ``(N,)`` float64 from each row to its k-th nearest other row: the (k+1)-th smallest distance
    including the row itself, as in Naeem et al.'s reference code."""
    values, _ = chunked_knn(features, features, k + 1, metric="euclidean", **kwargs)
    return values[:, k]


# ----------------------------------------------------------------------------------------------------
# Precision, recall, density, coverage
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PRDC:
    """PRDC figures and the per-sample quantities behind them (for intervals and inspection).

    ``fake_counts`` ``(M,)``: how many real k-NN balls contain each synthetic sample; ``real_recalled`` ``(N,)``:
    whether a synthetic k-NN ball contains each real sample; ``real_covered`` ``(N,)``: whether each real ball
    contains a synthetic sample.
    """

    precision: float
    recall: float
    density: float
    coverage: float
    k: int
    fake_counts: np.ndarray
    real_recalled: np.ndarray
    real_covered: np.ndarray


def prdc(
    real: Any,
    fake: Any,
    k: int = 5,
    *,
    device: str | torch.device | None = "auto",
    dtype: torch.dtype = torch.float32,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    ref_chunk: int = DEFAULT_REF_CHUNK,
) -> PRDC:
    """Precision, recall, density and coverage of ``fake`` ``(M, D)`` against ``real`` ``(N, D)`` (Naeem et al.
    2020), with k-NN radii from each set and strict ``<`` comparisons as in their reference code.

    precision = share of fake samples inside some real ball; recall = share of real samples inside some fake
    ball; density = (1/kM) * sum over fakes of the number of real balls containing it; coverage = share of real
    balls containing at least one fake. Three blocked passes (real-real, fake-fake, real-fake); each needs
    more than ``k`` rows per set.
    """
    _check_features(real, "real")
    _check_features(fake, "fake")
    if real.shape[0] <= k or fake.shape[0] <= k:
        raise ValueError(f"PRDC with k={k} needs more than {k} real and synthetic samples "
                         f"(got {real.shape[0]} and {fake.shape[0]})")
    chunks = {"device": device, "dtype": dtype, "query_chunk": query_chunk, "ref_chunk": ref_chunk}
    dev = resolve_device(device)
    r = _tensor(real, dev, dtype)
    centre = r.mean(dim=0, keepdim=True)
    r = r - centre
    r_sq = (r * r).sum(dim=1)
    real_r2 = torch.as_tensor(knn_radii(real, k, **chunks) ** 2, device=dev, dtype=dtype)
    fake_r2_all = torch.as_tensor(knn_radii(fake, k, **chunks) ** 2, device=dev, dtype=dtype)
    n_real, n_fake = int(real.shape[0]), int(fake.shape[0])
    counts = torch.zeros(n_fake, dtype=torch.int64, device=dev)
    real_min2 = torch.full((n_real,), math.inf, dtype=dtype, device=dev)
    recalled = torch.zeros(n_real, dtype=torch.bool, device=dev)
    for f0 in range(0, n_fake, query_chunk):
        fq = _tensor(fake[f0:f0 + query_chunk], dev, dtype) - centre
        f_sq = (fq * fq).sum(dim=1)
        fake_r2 = fake_r2_all[f0:f0 + query_chunk]
        for r0 in range(0, n_real, ref_chunk):
            d2 = _sq_dists(fq, r[r0:r0 + ref_chunk], f_sq, r_sq[r0:r0 + ref_chunk])
            counts[f0:f0 + fq.shape[0]] += (d2 < real_r2[None, r0:r0 + ref_chunk]).sum(dim=1)
            block = slice(r0, r0 + d2.shape[1])
            real_min2[block] = torch.minimum(real_min2[block], d2.min(dim=0).values)
            recalled[block] |= (d2 < fake_r2[:, None]).any(dim=0)
    counts_np = counts.cpu().numpy()
    recalled_np = recalled.cpu().numpy()
    covered_np = (real_min2 < real_r2).cpu().numpy()
    return PRDC(
        precision=float((counts_np > 0).mean()),
        recall=float(recalled_np.mean()),
        density=float(counts_np.sum() / (k * n_fake)),
        coverage=float(covered_np.mean()),
        k=k,
        fake_counts=counts_np,
        real_recalled=recalled_np,
        real_covered=covered_np,
    )


# ----------------------------------------------------------------------------------------------------
# Fréchet distance
# ----------------------------------------------------------------------------------------------------


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` (float64) of ``features`` ``(N, D)``, N >= 2."""
    x = np.asarray(features, dtype=np.float64)
    _check_features(x, "features")
    if x.shape[0] < 2:
        raise ValueError("a covariance needs at least 2 samples")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0.0).sqrt()) @ vectors.T


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, device: str | torch.device | None = "auto") -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``, in float64.

    The trace of the matrix square root is computed exactly for PSD covariances as
    ``sum(sqrt(eig(sigma1^(1/2) sigma2 sigma1^(1/2))))`` (symmetric, so no complex round-off as with sqrtm).
    """
    dev = resolve_device(device)
    m1, m2 = _tensor(mu1, dev, torch.float64), _tensor(mu2, dev, torch.float64)
    s1, s2 = _tensor(sigma1, dev, torch.float64), _tensor(sigma2, dev, torch.float64)
    root = _sqrt_psd((s1 + s1.T) / 2)
    middle = root @ ((s2 + s2.T) / 2) @ root
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0.0).sqrt().sum()
    value = (m1 - m2).square().sum() + s1.trace() + s2.trace() - 2.0 * trace_sqrt
    return float(value)


def fid(real: Any, fake: Any, device: str | torch.device | None = "auto") -> float:
    """FID between feature sets ``real`` ``(N, D)`` and ``fake`` ``(M, D)`` (both >= 2 rows), float64.

    With fewer samples than dimensions the covariance square-root trace is taken from the singular values of
    the ``N x M`` cross-product of the centred features (``tr((S1 S2)^(1/2)) = ||A B^T||_* / sqrt((N-1)(M-1))``),
    which is exact and avoids ``D x D`` matrices; otherwise :func:`frechet_distance` on the covariances.
    """
    _check_features(real, "real")
    _check_features(fake, "fake")
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 samples per set (got {real.shape[0]} and {fake.shape[0]})")
    dev = resolve_device(device)
    a = _tensor(real, dev, torch.float64)
    b = _tensor(fake, dev, torch.float64)
    n1, n2, dims = a.shape[0], b.shape[0], a.shape[1]
    if min(n1, n2) >= dims:
        mu1, mu2 = a.mean(dim=0), b.mean(dim=0)
        ac, bc = a - mu1, b - mu2
        return frechet_distance(mu1, ac.T @ ac / (n1 - 1), mu2, bc.T @ bc / (n2 - 1), device=dev)
    mu1, mu2 = a.mean(dim=0), b.mean(dim=0)
    ac, bc = a - mu1, b - mu2
    trace_sqrt = torch.linalg.svdvals(ac @ bc.T).sum() / math.sqrt((n1 - 1) * (n2 - 1))
    value = (mu1 - mu2).square().sum() + ac.square().sum() / (n1 - 1) + bc.square().sum() / (n2 - 1) - 2 * trace_sqrt
    return float(value)


def fid_bootstrap(real: Any, fake: Any, n_bootstrap: int = 100, seed: int = 0,
                  device: str | torch.device | None = "auto") -> np.ndarray:
    """FIDs ``(n_bootstrap,)`` of resamples with replacement of both sets (each to its own size)."""
    rng = np.random.default_rng([seed, 4591])
    real = np.asarray(real)
    fake = np.asarray(fake)
    out = np.empty(n_bootstrap, dtype=np.float64)
    for b in range(n_bootstrap):
        out[b] = fid(real[rng.integers(0, len(real), len(real))], fake[rng.integers(0, len(fake), len(fake))],
                     device=device)
    return out


# ----------------------------------------------------------------------------------------------------
# KID
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KID:
    """KID over random subsets: mean and (population) std of the per-subset unbiased MMD^2 estimates."""

    mean: float
    std: float
    values: np.ndarray
    subset_size: int


def kid_subsets(n_real: int, n_fake: int, subset_size: int, n_subsets: int,
                seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_subsets`` pairs of index arrays, each drawn without replacement and independently of the other
    subsets: ``subset_size`` real indices and ``subset_size`` synthetic ones.

    When ``subset_size`` would take the whole of the smaller set, subsets are half of it instead (at least 2):
    subsets of the whole set would all be that set, so their spread (``kid_std`` and the interval) would be 0
    whatever the data. The unbiased MMD^2 has the same expectation at any subset size, so KID's mean is the same
    estimate; its spread is that of half-size subsets, wider than the full set's."""
    smaller = min(n_real, n_fake)
    if smaller < 2:
        raise ValueError(f"KID needs at least 2 samples per set (got {n_real} and {n_fake})")
    m = subset_size if subset_size < smaller else max(2, smaller // 2)
    rng = np.random.default_rng([seed, 7717])
    return [(rng.choice(n_real, m, replace=False), rng.choice(n_fake, m, replace=False)) for _ in range(n_subsets)]


def polynomial_mmd2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 between ``x`` and ``y`` (both ``(m, D)``) with the kernel ``k(a, b) = (a.b / D + 1)^3``."""
    m, dims = x.shape
    k_xx = (x @ x.T / dims + 1) ** 3
    k_yy = (y @ y.T / dims + 1) ** 3
    k_xy = (x @ y.T / dims + 1) ** 3
    off = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(off - 2 * k_xy.sum() / (m * m))


def kid(real: Any, fake: Any, subset_size: int = 1000, n_subsets: int = 100, seed: int = 0,
        device: str | torch.device | None = "auto") -> KID:
    """KID of ``fake`` against ``real`` (features ``(N, D)``, ``(M, D)``) on :func:`kid_subsets`."""
    _check_features(real, "real")
    _check_features(fake, "fake")
    dev = resolve_device(device)
    a = _tensor(real, dev, torch.float64)
    b = _tensor(fake, dev, torch.float64)
    subsets = kid_subsets(a.shape[0], b.shape[0], subset_size, n_subsets, seed)
    values = np.array([polynomial_mmd2(a[torch.as_tensor(i, device=dev)], b[torch.as_tensor(j, device=dev)])
                       for i, j in subsets])
    return KID(float(values.mean()), float(values.std()), values, len(subsets[0][0]))


# ----------------------------------------------------------------------------------------------------
# All fidelity figures of one comparison
# ----------------------------------------------------------------------------------------------------


def fidelity_metrics(
    real: Any,
    fake: Any,
    *,
    k: int = 5,
    kid_subset_size: int = 1000,
    kid_n_subsets: int = 100,
    n_bootstrap: int = 100,
    seed: int = 0,
    device: str | torch.device | None = "auto",
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    ref_chunk: int = DEFAULT_REF_CHUNK,
) -> dict[str, Any]:
    """FID (+ percentile-bootstrap 95% CI), KID (mean, std, 2.5/97.5 percentiles of the subset estimates) and
    PRDC (+ 95% intervals: Wilson for the shares, normal for density) with the sample sizes, as a flat dict
    of result-row columns. The real and synthetic features are used as given (subsample before calling)."""
    real = np.asarray(real, dtype=np.float32)
    fake = np.asarray(fake, dtype=np.float32)
    row: dict[str, Any] = {"n_real": len(real), "n_synthetic": len(fake)}
    row["fid"] = fid(real, fake, device=device)
    if n_bootstrap > 0:
        boot = fid_bootstrap(real, fake, n_bootstrap, seed, device=device)
        row["fid_ci_low"], row["fid_ci_high"] = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    row["fid_bootstrap"] = int(n_bootstrap)
    kid_result = kid(real, fake, kid_subset_size, kid_n_subsets, seed, device=device)
    row["kid_mean"], row["kid_std"] = kid_result.mean, kid_result.std
    row["kid_ci_low"], row["kid_ci_high"] = (float(v) for v in np.percentile(kid_result.values, [2.5, 97.5]))
    row["kid_subset_size"], row["kid_subsets"] = kid_result.subset_size, int(kid_n_subsets)
    p = prdc(real, fake, k, device=device, query_chunk=query_chunk, ref_chunk=ref_chunk)
    row["prdc_k"] = k
    row["precision"] = p.precision
    row["precision_ci_low"], row["precision_ci_high"] = wilson_interval(float((p.fake_counts > 0).sum()), len(fake))
    row["recall"] = p.recall
    row["recall_ci_low"], row["recall_ci_high"] = wilson_interval(float(p.real_recalled.sum()), len(real))
    row["density"] = p.density
    row["density_ci_low"], row["density_ci_high"] = mean_interval(p.fake_counts / k)
    row["coverage"] = p.coverage
    row["coverage_ci_low"], row["coverage_ci_high"] = wilson_interval(float(p.real_covered.sum()), len(real))
    return row
