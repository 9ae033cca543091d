"""Every fidelity figure of one comparison — FID and FD∞ (:mod:`benchmark.fidelity.distances`), KID
(:mod:`benchmark.fidelity.kid`), precision / recall / density / coverage (:mod:`benchmark.fidelity.prdc`) — with its
95% interval and sample sizes, as the result-row columns of the image-quality stage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from benchmark.core.stats import cluster_codes, clustered_proportion_ci
from benchmark.fidelity.distances import (
    DEFAULT_JACKKNIFE_GROUPS,
    DEFAULT_QUERY_CHUNK,
    DEFAULT_REF_CHUNK,
    _numpy,
    fid_jackknife,
    jackknife_groups,
)
from benchmark.fidelity.kid import kid, kid_interval
from benchmark.fidelity.prdc import DENSITY_RESAMPLES, coverage_interval, density_interval, prdc


def fidelity_metrics(
    real: Any,
    fake: Any,
    *,
    real_clusters: Sequence[Any] | np.ndarray | None = None,
    fake_clusters: Sequence[Any] | np.ndarray | None = None,
    real_cluster_kind: str | None = None,
    fake_cluster_kind: str | None = None,
    k: int = 5,
    kid_subset_size: int = 1000,
    kid_n_subsets: int = 100,
    n_groups: int = DEFAULT_JACKKNIFE_GROUPS,
    density_resamples: int = DENSITY_RESAMPLES,
    seed: int = 0,
    device: str | torch.device | None = "auto",
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    ref_chunk: int = DEFAULT_REF_CHUNK,
) -> dict[str, Any]:
    """Every fidelity figure of ``fake`` ``(M, D)`` against ``real`` ``(N, D)`` with its 95% interval and sample
    sizes, as a flat dict of result-row columns. The features are used as given (subsample before calling).

    ``real_clusters`` ``(N,)`` / ``fake_clusters`` ``(M,)``: cluster ids (patients; a synthetic image's source
    patient or prompt row; None: one image each), named in ``ci_method`` by ``*_cluster_kind``. Columns: ``fid``
    and ``fd_inf`` with jackknife intervals (:func:`fid_jackknife`), ``fid_se``, ``jackknife_groups``;
    ``kid_mean`` / ``kid_std`` over subsets, ``kid_ci_low`` / ``kid_ci_high`` (jackknife interval of the mean),
    ``kid_subset_p025`` / ``kid_subset_p975`` (percentiles of the subset values: their spread, not an interval);
    precision, recall, coverage (Wilson on the cluster-effective n: precision over synthetic clusters, recall and
    coverage over real ones) and density (:func:`density_interval`); ``ci_method`` naming each method; ``notes``.
    Precision and density are resampled on the synthetic side given the real set, recall and coverage on the real
    side given the synthetic set.
    """
    real = np.asarray(_numpy(real), dtype=np.float32)
    fake = np.asarray(_numpy(fake), dtype=np.float32)
    n1, n2 = len(real), len(fake)
    real_kind = real_cluster_kind or ("patient" if real_clusters is not None else "image")
    fake_kind = fake_cluster_kind or ("cluster" if fake_clusters is not None else "image")
    row: dict[str, Any] = {"n_real": n1, "n_synthetic": n2,
                           "n_real_clusters": int(cluster_codes(real_clusters, n1).max()) + 1,
                           "n_synthetic_clusters": int(cluster_codes(fake_clusters, n2).max()) + 1}
    groups = jackknife_groups(n1, n2, real_clusters, fake_clusters, n_groups, seed)
    fj = fid_jackknife(real, fake, real_clusters=real_clusters, fake_clusters=fake_clusters, groups=groups,
                       device=device)
    row.update({"fid": fj.fid, "fid_ci_low": fj.ci_low, "fid_ci_high": fj.ci_high, "fid_se": fj.se,
                "fd_inf": fj.fd_inf, "fd_inf_ci_low": fj.fd_inf_ci_low, "fd_inf_ci_high": fj.fd_inf_ci_high,
                "jackknife_groups": fj.groups})
    kid_result = kid(real, fake, kid_subset_size, kid_n_subsets, seed, device=device, groups=groups)
    row["kid_mean"], row["kid_std"] = kid_result.mean, kid_result.std
    row["kid_ci_low"], row["kid_ci_high"] = kid_interval(kid_result)
    row["kid_subset_p025"], row["kid_subset_p975"] = (float(v) for v in np.percentile(kid_result.values, [2.5, 97.5]))
    row["kid_subset_size"], row["kid_subsets"] = kid_result.subset_size, int(kid_n_subsets)
    p = prdc(real, fake, k, real_groups=None if groups is None else groups[0], device=device,
             query_chunk=query_chunk, ref_chunk=ref_chunk)
    row["prdc_k"] = k
    for name, hits, clusters in (("precision", p.fake_counts > 0, fake_clusters),
                                 ("recall", p.real_recalled, real_clusters)):
        row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = clustered_proportion_ci(hits, clusters)
    row["coverage"] = p.coverage
    row["coverage_ci_low"], row["coverage_ci_high"] = coverage_interval(p, real_clusters)
    row["density"] = p.density
    row["density_ci_low"], row["density_ci_high"] = density_interval(p.fake_counts / k, fake_clusters,
                                                                     density_resamples, seed)
    g = fj.groups
    jackknife = (f"delete-a-group jackknife over {g} groups of whole clusters (real: {real_kind}, synthetic: "
                 f"{fake_kind}), t with {g - 1} df (FID's interval covers the expected FID at these N, FD∞'s the "
                 "population distance)") if g else "no interval (fewer than 5 clusters for the jackknife)"
    coverage_deff = "the jackknife's or the patients' design effect, the larger" if groups is not None else \
        f"the {real_kind} clusters' design effect"
    row["ci_method"] = (f"FID, FD∞, KID: {jackknife}; precision: Wilson on the effective n of synthetic "
                        f"{fake_kind} clusters, given the real set; recall: Wilson on the effective n of real "
                        f"{real_kind} clusters, given the synthetic set; coverage: Wilson on n over {coverage_deff}, "
                        f"given the synthetic set; density: bootstrap of synthetic {fake_kind} clusters, percentile "
                        f"({density_resamples} resamples), given the real set")
    notes = list(fj.notes)
    if groups is not None and math.isnan(row["kid_ci_low"]):
        notes.append("no KID interval: a jackknife group held nearly all of a subset")
    row["notes"] = "; ".join(notes)
    return row
