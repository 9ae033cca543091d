"""Scoring and feature-extraction throughput against the bare DenseNet-121 forward on ready tensors, same process.

Full paths, as the stages run them on PNG files on disk:

* **scoring** (pretrained-classifier utility): :func:`benchmark.models.scoring.score_images` -- decode, xrv
  normalisation, centre crop, resize, range check, DataLoader workers, classifier forward;
* **features** (image quality, "FID (XRV)"): :func:`benchmark.fidelity.features.extract_features` with the xrv extractor
  -- file hashing, cache lookup, decode, preprocessing, workers, ``features2`` forward, cache write; then the same
  call again, which must compute nothing (every image's features are computed once for all metrics).

Each against the bare forward of the same model on a ready ``(B, 1, S, S)`` batch (goal: ratio >= 0.8). The model
is an untrained xrv DenseNet-121 placed in a temporary xrv weights cache and loaded through the harness's loader
(speed does not depend on the weights).

    python benchmarks/scoring_throughput.py --images 256 --size 224 --workers 0,1,2

Not run by the test suite.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchxrayvision as xrv
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.fidelity.features import extract_features, load_extractor
from benchmark.models.classifiers import place_in_xrv_cache
from benchmark.models.scoring import score_images

WEIGHTS = "densenet121-res224-all"


def timed(step) -> tuple[object, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=224, help="network input size")
    parser.add_argument("--source-size", type=int, default=512, help="size of the PNG files on disk")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (main process)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        torch.manual_seed(0)
        place_in_xrv_cache(xrv.models.DenseNet(weights=None), WEIGHTS, tmp / "xrv")
        extractor = load_extractor("xrv", WEIGHTS, image_size=args.size, device=device, xrv_cache_dir=tmp / "xrv")
        model = xrv.models.DenseNet(weights=None).to(device).eval()
        if hasattr(model, "input_resolution"):
            del model.input_resolution
        paths = []
        for i in range(args.images):
            path = tmp / "png" / f"{i}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (args.source_size, args.source_size), dtype=np.uint8)).save(path)
            paths.append(path)
        ready = torch.rand(args.batch_size, 1, args.size, args.size, device=device) * 2048 - 1024
        n_batches = -(-args.images // args.batch_size)

        def bare(forward) -> float:
            with torch.no_grad():
                forward(ready)  # warm-up
                _, seconds = timed(lambda: [forward(ready) for _ in range(n_batches)])
            return n_batches * args.batch_size / seconds

        bare_scoring = bare(model)
        bare_features = bare(extractor.embed)
        print(f"device {device}, {args.threads} torch threads, {args.images} PNGs of {args.source_size} px -> "
              f"{args.size} px, batch {args.batch_size}")
        print(f"{'path':<58} {'images/s':>9} {'ratio to bare':>14}")
        print(f"{'bare classifier forward on ready tensors':<58} {bare_scoring:>9.1f} {1.0:>14.2f}")
        print(f"{'bare features2 forward on ready tensors':<58} {bare_features:>9.1f} {1.0:>14.2f}")
        for workers in (int(w) for w in args.workers.split(",")):
            _, seconds = timed(lambda w=workers: score_images(model, paths, args.size, args.batch_size, w, device))
            rate = args.images / seconds
            print(f"{f'score_images, {workers} workers':<58} {rate:>9.1f} {rate / bare_scoring:>14.2f}")
        for workers in (int(w) for w in args.workers.split(",")):
            cache = tmp / f"cache{workers}"
            first, seconds = timed(lambda w=workers, c=cache: extract_features(
                paths, extractor, cache_dir=c, batch_size=args.batch_size, num_workers=w))
            rate = args.images / seconds
            print(f"{f'extract_features, {workers} workers (computed {first.n_computed})':<58} {rate:>9.1f} "
                  f"{rate / bare_features:>14.2f}")
            again, seconds = timed(lambda w=workers, c=cache: extract_features(
                paths, extractor, cache_dir=c, batch_size=args.batch_size, num_workers=w))
            if again.n_computed or not np.array_equal(again.features, first.features):
                raise SystemExit("the second extract_features call recomputed features or changed them")
            print(f"{'  same call again: every feature from the cache':<58} {args.images / seconds:>9.1f} "
                  f"{'(computed 0)':>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
