"""Fidelity metrics between a real and a synthetic feature set, exact at any scale, with intervals that hold.

Owns the Fréchet distance (FID; "FID (XRV)" / FXD in torchxrayvision's DenseNet space), FD∞ (FID extrapolated to
infinitely many images, Chong & Forsyth 2020), the jackknife groups of whole clusters every interval here uses, and
the chunked nearest-neighbour search that precision / recall / density / coverage (:mod:`benchmark.fidelity.prdc`,
Naeem et al. 2020, k = 5) and :mod:`benchmark.fidelity.memorisation` are built on. KID on random subsets is in
:mod:`benchmark.fidelity.kid`; every figure of one comparison, as result-row columns, in
:mod:`benchmark.fidelity.metrics`.

Intervals. FID, FD∞ and KID get a delete-a-group jackknife (:func:`fid_jackknife`, :func:`kid`): the images of each
side are split into G groups of whole clusters (patients; a synthetic image's source patient or prompt row), and
replicate g drops group g from both sides at once. A percentile bootstrap of FID is not used: resampling with
replacement duplicates images, which shrinks the covariances' spread and lifts FID, so its interval lay wholly above
its own estimate. FID is biased upward at finite N, so its interval targets E[FID_N], the expected FID at these sample
sizes; FD∞ (the jackknife's bias correction) targets the population distance. Precision, recall and coverage get a
Wilson interval on the cluster-effective n, density a cluster-bootstrap percentile interval.

Every function takes feature arrays ``(N, D)`` (float32 or float64 numpy arrays or tensors) and returns numbers or
arrays; nothing is cached between calls. Nearest neighbours and PRDC are computed in blocks of at most
``query_chunk x ref_chunk`` distances on ``device`` (a GPU when present), so the full ``N x M`` distance matrix is
never held: 75,000 x 75,000 features of 1,024 dims fit in a few hundred MB beyond the features themselves.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from scipy import stats as sps

from benchmark.core.stats import cluster_codes
from benchmark.core.stats import wilson_interval as wilson_interval  # re-exported: privacy.py and tests import it here
from benchmark.fidelity.defaults import DEFAULT_JACKKNIFE_GROUPS, MIN_JACKKNIFE_GROUPS

Metric = Literal["euclidean", "cosine"]
DEFAULT_QUERY_CHUNK = 2048
DEFAULT_REF_CHUNK = 8192
#: fewer clusters than this on the smaller side: no jackknife interval (and no FD∞)
#: FD∞ needs at least this many images per side per feature dimension (below, the extrapolation is biased)
FD_INF_MIN_N_PER_DIM = 1.5
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


def _numpy(x: Any) -> np.ndarray:
    """``x`` as a numpy array in its own dtype (a tensor is copied to the CPU)."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


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


def mean_interval(values: np.ndarray) -> tuple[float, float]:
    """Normal-approximation 95% interval of the mean of ``values`` (1-d); NaNs with fewer than 2 values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return math.nan, math.nan
    half = Z_95 * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean() - half), float(values.mean() + half)


# ----------------------------------------------------------------------------------------------------
# Jackknife groups of whole clusters
# ----------------------------------------------------------------------------------------------------


def balanced_groups(clusters: Sequence[Any] | np.ndarray, n_groups: int,
                    seed: int | Sequence[int] = 0) -> np.ndarray:
    """Group ``(n,)`` int64 in ``0 .. n_groups - 1`` of each item, whole clusters per group.

    ``clusters`` ``(n,)``: one id per item (a patient, a prompt row; distinct ids: one item each). Clusters are
    shuffled with ``seed``, ordered by size (largest first, ties in shuffled order) and each given to the group
    with the fewest items so far, so group sizes differ by at most the largest cluster; a cluster's items are never
    split. Needs at least ``n_groups`` clusters.
    """
    ids = np.asarray(clusters)
    codes = np.unique(ids.astype(str), return_inverse=True)[1].reshape(-1).astype(np.int64)
    k = int(codes.max()) + 1 if codes.size else 0
    if not 1 <= n_groups <= k:
        raise ValueError(f"cannot form {n_groups} groups from {k} clusters")
    sizes = np.bincount(codes, minlength=k)
    order = np.random.default_rng(seed).permutation(k)
    order = order[np.argsort(-sizes[order], kind="stable")]
    heap = [(0, g) for g in range(n_groups)]
    owner = np.empty(k, dtype=np.int64)
    for c in order.tolist():
        total, g = heapq.heappop(heap)
        owner[c] = g
        heapq.heappush(heap, (total + int(sizes[c]), g))
    return owner[codes]


def jackknife_groups(n_real: int, n_fake: int, real_clusters: Sequence[Any] | np.ndarray | None = None,
                     fake_clusters: Sequence[Any] | np.ndarray | None = None, n_groups: int = DEFAULT_JACKKNIFE_GROUPS,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """Jackknife groups of the real ``(n_real,)`` and synthetic ``(n_fake,)`` items (:func:`balanced_groups`, each
    side formed independently; replicate g drops group g of both), G = ``n_groups`` capped at the number of
    clusters on the smaller side. None when that is below :data:`MIN_JACKKNIFE_GROUPS`. Clusters None: one item
    each."""
    rc = cluster_codes(real_clusters, n_real)
    fc = cluster_codes(fake_clusters, n_fake)
    g = min(int(n_groups), int(rc.max()) + 1, int(fc.max()) + 1)
    if g < MIN_JACKKNIFE_GROUPS:
        return None
    return balanced_groups(rc, g, [seed, 1]), balanced_groups(fc, g, [seed, 2])


def _t_quantile(confidence: float, df: int) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(sps.t.ppf(0.5 + confidence / 2, df))


def jackknife_se(leave_out: np.ndarray) -> float:
    """Delete-a-group jackknife standard error ``sqrt((G-1)/G * sum_g (T_-g - mean)^2)`` of the leave-one-group-out
    estimates ``(G,)`` (NaN if any is NaN)."""
    values = np.asarray(leave_out, dtype=np.float64)
    g = values.size
    if g < 2 or not np.isfinite(values).all():
        return math.nan
    return float(math.sqrt((g - 1) / g * np.square(values - values.mean()).sum()))


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


def _trace_sqrt_product(s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """``tr((s1 s2)^(1/2))`` of two symmetric PSD matrices ``(D, D)``: the square roots of the eigenvalues of
    ``L^T s2 L`` (``s1 = L L^T``, Cholesky; similar to ``s2 s1``), or of ``s1^(1/2) s2 s1^(1/2)`` when ``s1`` is
    singular. Both are symmetric, so there is no complex round-off as with sqrtm; Cholesky is ~20x cheaper than
    the eigendecomposition it replaces."""
    chol, info = torch.linalg.cholesky_ex(s1)
    root = chol if int(info) == 0 else _sqrt_psd(s1)
    middle = root.T @ s2 @ root
    return torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0.0).sqrt().sum()


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, device: str | torch.device | None = "auto") -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``, in float64 (means ``(D,)``,
    covariances ``(D, D)``; see :func:`_trace_sqrt_product` for the exact trace)."""
    dev = resolve_device(device)
    m1, m2 = _tensor(mu1, dev, torch.float64), _tensor(mu2, dev, torch.float64)
    s1, s2 = _tensor(sigma1, dev, torch.float64), _tensor(sigma2, dev, torch.float64)
    trace_sqrt = _trace_sqrt_product((s1 + s1.T) / 2, (s2 + s2.T) / 2)
    value = (m1 - m2).square().sum() + s1.trace() + s2.trace() - 2.0 * trace_sqrt
    return float(value)


def _fid_tensors(a: torch.Tensor, b: torch.Tensor) -> float:
    n1, n2, dims = a.shape[0], b.shape[0], a.shape[1]
    mu1, mu2 = a.mean(dim=0), b.mean(dim=0)
    ac, bc = a - mu1, b - mu2
    if min(n1, n2) >= dims:
        return frechet_distance(mu1, ac.T @ ac / (n1 - 1), mu2, bc.T @ bc / (n2 - 1), device=a.device)
    trace_sqrt = torch.linalg.svdvals(ac @ bc.T).sum() / math.sqrt((n1 - 1) * (n2 - 1))
    value = (mu1 - mu2).square().sum() + ac.square().sum() / (n1 - 1) + bc.square().sum() / (n2 - 1) - 2 * trace_sqrt
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
    return _fid_tensors(_tensor(real, dev, torch.float64), _tensor(fake, dev, torch.float64))


@dataclass(frozen=True)
class FIDJackknife:
    """FID with its delete-a-group jackknife interval, and FD∞ with its own (:func:`fid_jackknife`).

    ``leave_out`` ``(G,)``: FID without group g (empty when there is no jackknife); ``se``: the jackknife standard
    error (the same for FID and FD∞); ``notes``: why an interval or FD∞ is missing.
    """

    fid: float
    ci_low: float
    ci_high: float
    fd_inf: float
    fd_inf_ci_low: float
    fd_inf_ci_high: float
    se: float
    groups: int
    leave_out: np.ndarray = field(repr=False)
    notes: tuple[str, ...] = ()


def _leave_group_out_fids(a: torch.Tensor, b: torch.Tensor, ga: np.ndarray, gb: np.ndarray, g: int) -> np.ndarray:
    """FID ``(G,)`` of ``a`` and ``b`` without their group j, for each j (NaN where a side keeps < 2 rows).

    With at least as many rows as dims on both sides, each side's covariance without group j comes from one pass:
    the full scatter of the centred rows minus the group's scatter and its mean shift (float64, exact up to
    round-off); otherwise each replicate's FID is computed afresh (the ``N < D`` cross-product path, cheap)."""
    out = np.full(g, math.nan)
    n1, n2, dims = a.shape[0], b.shape[0], a.shape[1]
    keep_a = [np.flatnonzero(ga != j) for j in range(g)]
    keep_b = [np.flatnonzero(gb != j) for j in range(g)]
    if min(n1, n2) < dims:
        for j in range(g):
            if len(keep_a[j]) >= 2 and len(keep_b[j]) >= 2:
                out[j] = _fid_tensors(a[torch.as_tensor(keep_a[j], device=a.device)],
                                      b[torch.as_tensor(keep_b[j], device=b.device)])
        return out

    def prepare(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu = x.mean(dim=0)
        xc = x - mu
        return mu, xc, xc.T @ xc

    def without(mu: torch.Tensor, xc: torch.Tensor, scatter: torch.Tensor,
                groups: np.ndarray, j: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        dropped = xc[torch.as_tensor(np.flatnonzero(groups == j), device=xc.device)]
        kept = xc.shape[0] - dropped.shape[0]
        if kept < 2:
            return None
        total = dropped.sum(dim=0)  # the kept rows' sum is -total: the rows are centred on the full mean
        kept_scatter = scatter - dropped.T @ dropped - torch.outer(total, total) / kept
        return mu - total / kept, kept_scatter / (kept - 1)

    side_a, side_b = prepare(a), prepare(b)
    for j in range(g):
        stats_a, stats_b = without(*side_a, ga, j), without(*side_b, gb, j)
        if stats_a is not None and stats_b is not None:
            out[j] = frechet_distance(stats_a[0], stats_a[1], stats_b[0], stats_b[1], device=a.device)
    return out


def fid_jackknife(
    real: Any,
    fake: Any,
    *,
    real_clusters: Sequence[Any] | np.ndarray | None = None,
    fake_clusters: Sequence[Any] | np.ndarray | None = None,
    n_groups: int = DEFAULT_JACKKNIFE_GROUPS,
    seed: int = 0,
    groups: tuple[np.ndarray, np.ndarray] | None = None,
    confidence: float = 0.95,
    device: str | torch.device | None = "auto",
) -> FIDJackknife:
    """FID of ``real`` ``(N, D)`` and ``fake`` ``(M, D)`` with a delete-a-group jackknife interval, and FD∞.

    The items of each side are split into G groups of whole clusters (:func:`jackknife_groups`; ``groups`` gives
    them ready-made); F_g is the FID without group g of both sides. With ``SE = sqrt((G-1)/G sum (F_g - mean)^2)``:

    * FID_N (all images) -+ ``t_{G-1} SE``, the lower end clipped at 0. It covers E[FID_N], the expected FID at
      these sample sizes, not the population distance: FID is biased upward by roughly ``c (1/N + 1/M)``.
    * FD∞ = the mean of the pseudo-values ``G FID_N - (G-1) F_g``, -+ ``t_{G-1} SE``. This is Chong & Forsyth's
      (2020) linear extrapolation of FID in 1/N to N = ∞, through the full-size FID and the leave-one-group-out
      FIDs at N(G-1)/G, so it removes the 1/N bias and covers the population Fréchet distance. Below
      ``1.5 D`` images on a side the bias is not linear in 1/N (FD∞ of two equal Gaussians at N = 100, D = 128
      read 14): FD∞ and its interval are NaN there, with a note. It can be slightly below 0 when the distance is
      near 0 (unbiased, not clipped).

    Fewer than :data:`MIN_JACKKNIFE_GROUPS` clusters on the smaller side: FID alone, NaN intervals and a note.
    """
    _check_features(real, "real")
    _check_features(fake, "fake")
    n1, n2, dims = int(real.shape[0]), int(fake.shape[0]), int(real.shape[1])
    value = fid(real, fake, device=device)
    nan = math.nan
    if groups is None:
        groups = jackknife_groups(n1, n2, real_clusters, fake_clusters, n_groups, seed)
    if groups is None:
        smaller = min(int(cluster_codes(real_clusters, n1).max()), int(cluster_codes(fake_clusters, n2).max())) + 1
        note = (f"no FID/FD∞ interval: {smaller} clusters on the smaller side, the jackknife needs "
                f"{MIN_JACKKNIFE_GROUPS}")
        return FIDJackknife(value, nan, nan, nan, nan, nan, nan, 0, np.zeros(0), (note,))
    ga, gb = (np.asarray(x, dtype=np.int64) for x in groups)
    g = int(max(ga.max(), gb.max())) + 1
    dev = resolve_device(device)
    leave_out = _leave_group_out_fids(_tensor(real, dev, torch.float64), _tensor(fake, dev, torch.float64), ga, gb, g)
    notes: list[str] = []
    se = jackknife_se(leave_out)
    if math.isnan(se):
        notes.append("no FID/FD∞ interval: a jackknife group held nearly all images of a side")
    half = _t_quantile(confidence, g - 1) * se
    pseudo = g * value - (g - 1) * leave_out
    fd_inf = float(pseudo.mean())
    fd_lo, fd_hi = fd_inf - half, fd_inf + half
    if min(n1, n2) < FD_INF_MIN_N_PER_DIM * dims:
        fd_inf = fd_lo = fd_hi = nan
        notes.append(f"no FD∞: {min(n1, n2)} images on the smaller side, fewer than {FD_INF_MIN_N_PER_DIM:g} x the "
                     f"{dims} feature dims, where the extrapolation to infinite N is biased")
    low = value - half if math.isnan(half) else max(0.0, value - half)
    return FIDJackknife(value, low, value + half, fd_inf, fd_lo, fd_hi, se, g, leave_out, tuple(notes))

