"""Re-identification scoring throughput against the bare backbone forward, and the best-match search at scale.

1. Scoring: images/s of :meth:`benchmark.privacy.reid.SiameseReID.embed` (input conversion, backbone, embedding head,
   sigmoid) through :func:`benchmark.privacy.reid.embed_images`, against the bare torchvision backbone's forward on the
   already-converted 3-channel batch, in the same process, same batch size and threads (goal: ratio >= 0.8).
2. Search: every query embedding's nearest training embedding and that pair's probability
   (:func:`benchmark.privacy.reid.best_matches`) for N queries x M references of F dims, with time and the process's
   peak resident memory (and the CUDA peak on a GPU) during the search; ``--search-n 75000`` is the 75,000 x 75,000
   case. Above ``--full-up-to`` only ``--partial-queries`` queries run against all M references and the full time
   is extrapolated (labelled). Memory is bounded by the blocks, not by N x M.

    python benchmarks/privacy_throughput.py                                  # CPU-friendly defaults
    python benchmarks/privacy_throughput.py --arch resnet50 --image-size 224 --search-n 75000 --full-up-to 75000

Not run by the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nn_scale import measure

from benchmark.fidelity.distances import resolve_device
from benchmark.privacy.reid import ARCHITECTURES, SiameseReID, best_matches, embed_images


def _rate(step, n_images: int, repeats: int) -> float:
    step()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return n_images / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=ARCHITECTURES, default="resnet50")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--n-images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--search-n", type=int, default=20000, help="queries and references of the search")
    parser.add_argument("--full-up-to", type=int, default=20000)
    parser.add_argument("--partial-queries", type=int, default=4096)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = SiameseReID(args.arch, args.features).to(device).eval()
    images = (torch.rand(args.n_images, 1, args.image_size, args.image_size) * 2048 - 1024).to(device)
    with torch.no_grad():
        prepared = model.prepare(images)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def bare() -> None:
        with torch.no_grad():
            for i in range(0, len(prepared), args.batch_size):
                model.model(prepared[i:i + args.batch_size])
        sync()

    def scored() -> None:
        embed_images(model, images, batch_size=args.batch_size, device=device)
        sync()

    bare_rate = _rate(bare, args.n_images, args.repeats)
    reid_rate = _rate(scored, args.n_images, args.repeats)
    print(f"device {device}, threads {torch.get_num_threads()}, {args.arch} at {args.image_size}px, "
          f"batch {args.batch_size}")
    print(f"  bare backbone forward: {bare_rate:8.1f} images/s")
    print(f"  re-id embedding      : {reid_rate:8.1f} images/s  ratio {reid_rate / bare_rate:.2f} (goal >= 0.8)")

    rng = np.random.default_rng(0)
    n = args.search_n
    ref = rng.random((n, args.features), dtype=np.float32)
    n_query = n if n <= args.full_up_to else min(args.partial_queries, n)
    query = rng.random((n_query, args.features), dtype=np.float32)
    (prob, idx), seconds, rss_mb, cuda_mb = measure(lambda: best_matches(model, query, ref, device=device), device)
    full = seconds * n / n_query
    label = "" if n_query == n else f" (extrapolated from {n_query} queries)"
    print(f"  best-match search {n} x {n} x {args.features}: {full:.1f} s{label}, "
          f"{n_query * n / seconds / 1e6:.0f} M pairs/s, peak RSS {rss_mb:.0f} MB"
          + (f", peak CUDA {cuda_mb:.0f} MB" if device.type == "cuda" else "")
          + f" (the N x M float32 matrix would be {n * n * 4 / 2**30:.1f} GiB)")
    assert np.isfinite(prob).all() and (idx >= 0).all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
