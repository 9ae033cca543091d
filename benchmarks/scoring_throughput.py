"""Scoring throughput of the pretrained-utility stage: images/s of the full path (decode, xrv normalisation, crop,
resize, range check, DataLoader workers, forward) against the bare model forward on ready tensors, same process.

The goal is that loading and preprocessing add at most 25% to the forward time once workers are used.

    python benchmarks/scoring_throughput.py --images 256 --size 224 --workers 0,2,4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchxrayvision as xrv
from PIL import Image

from benchmark.scoring import score_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=224, help="classifier input size")
    parser.add_argument("--source-size", type=int, default=512, help="size of the PNG files on disk")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", default="0,2")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = xrv.models.DenseNet(weights=None).to(device).eval()
    if hasattr(model, "input_resolution"):
        del model.input_resolution
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.images):
            path = Path(tmp) / f"{i}.png"
            Image.fromarray(rng.integers(0, 256, (args.source_size, args.source_size), dtype=np.uint8)).save(path)
            paths.append(path)
        ready = torch.rand(args.batch_size, 1, args.size, args.size, device=device) * 2048 - 1024
        with torch.no_grad():
            model(ready)  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(0, args.images, args.batch_size):
                model(ready)
            if device.type == "cuda":
                torch.cuda.synchronize()
        bare = args.images / (time.perf_counter() - started)
        print(f"device {device}, {args.images} images {args.source_size}px -> {args.size}px, batch {args.batch_size}")
        print(f"bare forward on ready tensors: {bare:8.1f} images/s")
        for workers in (int(w) for w in args.workers.split(",")):
            started = time.perf_counter()
            score_images(model, paths, args.size, args.batch_size, workers, device)
            full = args.images / (time.perf_counter() - started)
            print(f"full scoring path, {workers} workers: {full:8.1f} images/s  "
                  f"(overhead {bare / full - 1:+.0%} over the bare forward)")


if __name__ == "__main__":
    main()
