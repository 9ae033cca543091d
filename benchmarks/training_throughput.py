"""Training throughput (images/s) of DenseNet-121 through ``benchmark.models.training.train_classifier`` against a bare
forward + backward + optimiser loop in the same process, and their ratio.

Both train the same xrv DenseNet-121 on the same random images ``(N, 1, S, S)`` with the same batch size, optimiser
and loss. Setup (accelerate, model creation, data loading, the per-epoch validation on 16 images) is taken out by
timing ``--epochs`` and one epoch and dividing the extra images by the extra time: what remains is the steady-state
cost of an epoch. The harness runs with augmentation off (like for like) and on (its default). On a GPU
``--mixed-precision fp16`` / ``bf16`` applies to both loops.

    python benchmarks/training_throughput.py --image-size 64 --n-images 256            # CPU (default sizes)
    python benchmarks/training_throughput.py --image-size 224 --n-images 4096 --mixed-precision bf16   # one GPU
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.models.training import TrainConfig, make_densenet, train_classifier
from benchmarks.bare_loop import bare_step


def harness_seconds(images: torch.Tensor, labels: np.ndarray, epochs: int, args: argparse.Namespace,
                    augment: bool) -> float:
    """Wall time of one ``train_classifier`` call (all of it: setup, epochs, validation, selection)."""
    config = TrainConfig(image_size=args.image_size, epochs=epochs, batch_size=args.batch_size, lr=1e-3,
                         augment=augment, patience=epochs, mixed_precision=args.mixed_precision)
    started = time.perf_counter()
    train_classifier(images, labels, images[:16], labels[:16], config, progress=False)
    return time.perf_counter() - started


def bare_seconds(images: torch.Tensor, labels: np.ndarray, epochs: int, args: argparse.Namespace) -> float:
    """Wall time of a plain loop: DataLoader, forward, masked BCE, backward, AdamW step (same model and sizes)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.mixed_precision)
    started = time.perf_counter()
    torch.manual_seed(0)
    model = make_densenet(labels.shape[1]).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
    loader = DataLoader(TensorDataset(images, torch.as_tensor(labels)), batch_size=args.batch_size, shuffle=True,
                        drop_last=len(images) > args.batch_size)
    for _ in range(epochs):
        for x, y in loader:
            bare_step(model, optimizer, scaler, x.to(device, non_blocking=True), y.to(device, non_blocking=True),
                      dtype)  # reads the loss every step, as the harness does
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def steady_rate(run, n_images: int, epochs: int) -> tuple[float, float]:
    """(images/s of the extra epochs, seconds of the one-epoch run): ``run(epochs)`` minus ``run(1)``."""
    one = run(1)
    many = run(epochs)
    return n_images * (epochs - 1) / max(many - one, 1e-9), one


def main() -> None:
    gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224 if gpu else 64)
    parser.add_argument("--n-images", type=int, default=4096 if gpu else 256)
    parser.add_argument("--batch-size", type=int, default=64 if gpu else 32)
    parser.add_argument("--epochs", type=int, default=3, help="timed run length; one epoch is subtracted")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2")
    if args.mixed_precision != "no" and not gpu:
        parser.error("--mixed-precision needs a GPU")
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.uniform(-1024, 1024, (args.n_images, 1, args.image_size, args.image_size))
                              .astype(np.float32))
    labels = (rng.random((args.n_images, args.classes)) < 0.3).astype(np.float32)
    device = torch.cuda.get_device_name(0) if gpu else f"CPU, {args.threads} threads"
    print(f"DenseNet-121 (xrv, 1 channel) training, {args.n_images} images of {args.image_size} px, batch "
          f"{args.batch_size}, mixed precision {args.mixed_precision}, on {device}")
    bare, bare_one = steady_rate(lambda e: bare_seconds(images, labels, e, args), args.n_images, args.epochs)
    rows = [("bare forward+backward loop", bare, bare_one)]
    for augment in (False, True):
        rate, one = steady_rate(lambda e, a=augment: harness_seconds(images, labels, e, args, a), args.n_images,
                                args.epochs)
        rows.append((f"train_classifier (augment {'on' if augment else 'off'})", rate, one))
    print(f"{'path':<36} {'images/s':>10} {'ratio to bare':>14} {'1-epoch call (s)':>17}")
    for name, rate, one in rows:
        ratio = rate / bare if bare > 0 and math.isfinite(rate) else math.nan
        print(f"{name:<36} {rate:>10.1f} {ratio:>14.2f} {one:>17.1f}")


if __name__ == "__main__":
    main()
