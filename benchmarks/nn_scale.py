"""Time and peak memory of the chunked nearest-neighbour search and PRDC (fidelity.prdc), 10k-75k features.

Random 1,024-d float32 features stand in for real and synthetic sets. For each size N the script runs the full
PRDC (three N x N blocked passes: real radii, synthetic radii, real-synthetic) when N <= --full-up-to, otherwise one
blocked k-NN pass of --partial-queries queries against all N rows and extrapolates PRDC's time from its throughput
(labelled "extrapolated"). Throughput is distance pairs per second; the ratio compares it with a brute-force
baseline computed in this process (the whole distance matrix at --baseline-n, then top-k), whose results the
chunked search must reproduce. Peak memory is the process's resident-set high-water mark during each step (reset
before it through /proc/self/clear_refs on Linux), and the CUDA peak when running on a GPU.

    python benchmarks/nn_scale.py                      # 10k, 20k full; 75k partial (CPU-friendly)
    python benchmarks/nn_scale.py --full-up-to 75000   # everything in full (about 15 min on 2 CPU cores)

Also: memorisation's nearest-training-image search (:func:`~benchmark.fidelity.memorisation.feature_neighbours`) as
seconds per 1,000 synthetic images against N real training images, and PRDC against the ``prdc`` package (Naeem et
al.'s reference code, ``pip install -r benchmarks/requirements.txt``) at ``--package-n``, which it holds in memory
(it builds full N x N distance matrices): same figures, time and peak memory side by side.

Not run by the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.fidelity.distances import chunked_knn, resolve_device
from benchmark.fidelity.memorisation import feature_neighbours
from benchmark.fidelity.prdc import prdc


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def measure(step: Callable[[], Any], device: torch.device) -> tuple[Any, float, float, float]:
    """Run ``step`` once: (its result, seconds, peak RSS MB during it, peak CUDA MB or NaN)."""
    exact = _reset_peak()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    cuda_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return result, seconds, _peak_rss_mb() if exact else float("nan"), cuda_mb


def brute_force_knn(query: np.ndarray, ref: np.ndarray, k: int, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: the whole (N, M) distance matrix at once, then top-k."""
    full = torch.cdist(torch.as_tensor(query, device=device), torch.as_tensor(ref, device=device))
    values, index = full.topk(k, dim=1, largest=False)
    return values.cpu().numpy(), index.cpu().numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,20000,75000")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--full-up-to", type=int, default=20000, help="largest N to run PRDC on in full")
    parser.add_argument("--partial-queries", type=int, default=4096, help="queries of the partial pass above that")
    parser.add_argument("--baseline-n", type=int, default=4000, help="size of the brute-force baseline")
    parser.add_argument("--package-n", type=int, default=5000, help="size of the comparison with the prdc package")
    parser.add_argument("--memorisation-queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rng = np.random.default_rng(args.seed)
    print(f"device {device} | torch {torch.__version__} | {torch.get_num_threads()} threads | dim {args.dim} | "
          f"k {args.k}")

    n = args.baseline_n
    query = rng.standard_normal((n, args.dim), dtype=np.float32)
    ref = rng.standard_normal((n, args.dim), dtype=np.float32)
    (base_d, base_i), base_s, base_rss, base_cuda = measure(lambda: brute_force_knn(query, ref, args.k, device),
                                                          device)
    (chunk_d, chunk_i), chunk_s, chunk_rss, chunk_cuda = measure(
        lambda: chunked_knn(query, ref, args.k, device=device), device)
    same = float((chunk_i == base_i).mean())
    max_diff = float(np.abs(chunk_d - base_d).max())
    base_rate = n * n / base_s
    print(f"baseline brute force {n}x{n}: {base_s:.2f} s, {base_rate / 1e6:.1f} M pairs/s, peak RSS "
          f"{base_rss:.0f} MB, CUDA {base_cuda:.0f} MB")
    print(f"chunked same {n}x{n}:       {chunk_s:.2f} s, {n * n / chunk_s / 1e6:.1f} M pairs/s "
          f"(x{n * n / chunk_s / base_rate:.2f}), peak RSS {chunk_rss:.0f} MB, CUDA {chunk_cuda:.0f} MB; "
          f"same neighbours {same:.4%}, max distance difference {max_diff:.2e}")
    print()
    header = (f"{'N':>7} {'what':<34} {'time_s':>9} {'M pairs/s':>10} {'x base':>7} {'peak RSS MB':>12} "
              f"{'CUDA MB':>8} {'features MB':>12} {'full matrix GB':>15}")
    print(header)
    for n in sizes:
        real = rng.standard_normal((n, args.dim), dtype=np.float32)
        fake = rng.standard_normal((n, args.dim), dtype=np.float32) + np.float32(0.02)
        features_mb = 2 * real.nbytes / 2**20
        matrix_gb = n * n * 4 / 2**30
        if n <= args.full_up_to:
            result, seconds, rss, cuda = measure(lambda r=real, f=fake: prdc(r, f, args.k, device=device), device)
            rate = 3 * n * n / seconds
            what = f"PRDC full (P {result.precision:.3f} R {result.recall:.3f})"
            shown = seconds
        else:
            q = min(args.partial_queries, n)
            _, seconds, rss, cuda = measure(
                lambda r=real, q=q: chunked_knn(r[:q], r, args.k + 1, device=device), device)
            rate = q * n / seconds
            shown = 3 * n * n / rate
            what = f"PRDC extrapolated from {q} queries"
        print(f"{n:>7} {what:<34} {shown:>9.1f} {rate / 1e6:>10.1f} {rate / base_rate:>7.2f} {rss:>12.0f} "
              f"{cuda:>8.0f} {features_mb:>12.0f} {matrix_gb:>15.1f}")
        q = min(args.memorisation_queries, n)
        _, seconds, rss, cuda = measure(lambda r=real, f=fake, q=q: feature_neighbours(
            f[:q], r, r.mean(axis=0), device=device), device)
        print(f"{n:>7} {f'memorisation NN, {q} synthetic':<34} {seconds:>9.1f} {q * n / seconds / 1e6:>10.1f} "
              f"{q * n / seconds / base_rate:>7.2f} {rss:>12.0f} {cuda:>8.0f} {features_mb:>12.0f} "
              f"{'-':>15}   -> {seconds * 1000 / q:.1f} s per 1,000 synthetic images")
        del real, fake
    print()
    compare_with_package(args, rng, device)
    return 0


def compare_with_package(args: argparse.Namespace, rng: np.random.Generator, device: torch.device) -> None:
    """PRDC of fidelity.prdc against the ``prdc`` package on the same features of ``--package-n`` rows."""
    try:
        from prdc import compute_prdc
    except ImportError:
        print("prdc package not installed (pip install -r benchmarks/requirements.txt): comparison skipped")
        return
    n = args.package_n
    real = rng.standard_normal((n, args.dim), dtype=np.float32)
    fake = rng.standard_normal((n, args.dim), dtype=np.float32) + np.float32(0.02)
    ours, our_s, our_rss, _ = measure(lambda: prdc(real, fake, args.k, device=device), device)
    theirs, their_s, their_rss, _ = measure(lambda: compute_prdc(real, fake, args.k), device)
    print(f"PRDC at {n} x {n}, {args.dim} dims, k {args.k}: {'':<8} {'time_s':>8} {'peak RSS MB':>12}  "
          "precision  recall  density  coverage")
    for name, result, seconds, rss in (("benchmark.fidelity.prdc.prdc", ours, our_s, our_rss),
                                       ("prdc.compute_prdc", theirs, their_s, their_rss)):
        values = (result.precision, result.recall, result.density, result.coverage) if hasattr(result, "k") else (
            result["precision"], result["recall"], result["density"], result["coverage"])
        print(f"  {name:<32} {seconds:>8.1f} {rss:>12.0f}  " + "  ".join(f"{v:.4f}" for v in values))
    print(f"  time ratio (package / ours): {their_s / our_s:.2f}")


if __name__ == "__main__":
    sys.exit(main())
