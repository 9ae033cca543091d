"""Retrained stage at CheXGenBench's scale: one epoch of one real+synthetic unit of ``--n-real`` + ``--n-synthetic``
images streamed from the decoded-image cache, its peak memory, and its throughput against a bare PyTorch loop over the
same cached tensors held in memory (same process, same model, batch size and optimiser).

The script writes the PNGs itself (smooth random greyscale images at ``--png-size``; the point is I/O and memory),
builds the image cache once (timed, with its disk footprint), then runs ``train_classifier`` for one epoch on the
streamed images while a thread samples the resident memory of the process and of its DataLoader workers. The bare
loop then trains the same model on ``--bare-images`` of the same cached tensors loaded into memory (a DataLoader over
a ``TensorDataset``, forward, masked BCE, backward, AdamW step) and its images/s after a warm-up is the baseline.

``--model tiny`` (default on CPU) is a 3-layer CNN, so that reading images, not the network, decides the rate: a
DenseNet-121 epoch of 40,000 images at 224 px takes hours on 2 CPU cores. ``--model densenet`` is the stage's own
network (use it on a GPU; ``--precisions no,bf16`` compares fp32 with bf16 + channels_last there).

    python benchmarks/retrained_streaming.py --n-real 20000 --n-synthetic 20000 --image-size 224        # CPU
    python benchmarks/retrained_streaming.py --model densenet --precisions no,bf16 --num-workers 8      # one GPU
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmark.models.training as training
from benchmark.data.image_cache import ImageCache
from benchmark.models.training import TrainConfig, train_classifier
from benchmarks.bare_loop import bare_step


def tiny_model(n_outputs: int, init: str | None = None) -> torch.nn.Module:
    """A 3-layer CNN with the DenseNet's interface (1 channel in, ``n_outputs`` logits out)."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, n_outputs))
    return _Sigmoidable(net)


class _Sigmoidable(torch.nn.Module):
    """What ``train_classifier`` expects of its network: ``apply_sigmoid`` toggles a sigmoid on the outputs."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net, self.apply_sigmoid = net, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return torch.sigmoid(out) if self.apply_sigmoid else out


def write_pngs(folder: Path, n: int, size: int, seed: int) -> list[Path]:
    """``n`` smooth random 8-bit greyscale PNGs of ``size`` px (written once; reused when present)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:06d}.png" for i in range(n)]
    todo = [i for i, p in enumerate(paths) if not p.is_file()]
    rng = np.random.default_rng(seed)
    coarse = max(4, size // 16)
    for i in todo:
        small = rng.integers(0, 256, (coarse, coarse)).astype(np.uint8)
        image = Image.fromarray(small).resize((size, size), Image.BILINEAR)
        image.save(paths[i])
    return paths


class MemorySampler:
    """Peak resident memory of this process and of this process plus its children, sampled every 0.1 s."""

    def __init__(self):
        import psutil

        self.process = psutil.Process(os.getpid())
        self.peak_main = self.peak_tree = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                main = self.process.memory_info().rss
                tree = main + sum(c.memory_info().rss for c in self.process.children(recursive=True))
            except psutil.Error:
                continue
            self.peak_main, self.peak_tree = max(self.peak_main, main), max(self.peak_tree, tree)
            time.sleep(0.1)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def bare_rate(images: torch.Tensor, labels: np.ndarray, args: argparse.Namespace, precision: str) -> float:
    """Images/s of a plain training loop over ``images`` in memory, after a warm-up of up to 5 batches."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    torch.manual_seed(0)
    model = training.make_densenet(labels.shape[1]).to(device).train()
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
    loader = DataLoader(TensorDataset(images, torch.as_tensor(labels)), batch_size=args.batch_size, shuffle=True,
                        drop_last=True, pin_memory=device.type == "cuda")
    if len(loader) < 2:
        raise SystemExit(f"the bare loop needs at least 2 batches of {args.batch_size}; it holds {len(images)} images")
    warmup = min(5, len(loader) // 2)
    seen, started = 0, time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            seen, started = 0, time.perf_counter()
        x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        bare_step(model, optimizer, scaler, x, y.to(device, non_blocking=True), dtype)
        seen += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


def main() -> None:
    gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-real", type=int, default=20000)
    parser.add_argument("--n-synthetic", type=int, default=20000)
    parser.add_argument("--n-val", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--png-size", type=int, default=256, help="side of the PNGs written (resized on decoding)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=14)
    parser.add_argument("--num-workers", default="0,2", help="DataLoader workers of the streamed epoch, comma list")
    parser.add_argument("--model", choices=("tiny", "densenet"), default="densenet" if gpu else "tiny")
    parser.add_argument("--precisions", default="no", help="mixed precision of each run, comma list (GPU: no,bf16)")
    parser.add_argument("--augment", action="store_true", help="the stage's random affine augmentation on")
    parser.add_argument("--bare-images", type=int, default=4096, help="images the bare loop holds in memory")
    parser.add_argument("--workdir", default="/tmp/synthcxr_streaming_bench")
    args = parser.parse_args()
    if args.model == "tiny":
        training.make_densenet = tiny_model  # the harness path builds its network through this function
    work = Path(args.workdir)
    started = time.perf_counter()
    real = write_pngs(work / "real", args.n_real, args.png_size, seed=1)
    synthetic = write_pngs(work / "synthetic", args.n_synthetic, args.png_size, seed=2)
    val = write_pngs(work / "val", args.n_val, args.png_size, seed=3)
    print(f"PNGs: {len(real)} real + {len(synthetic)} synthetic + {len(val)} val at {args.png_size} px in {work} "
          f"({time.perf_counter() - started:.0f} s, reused when present)", flush=True)
    cache = ImageCache(work / "cache", args.image_size)
    started = time.perf_counter()
    decoded = cache.build(real + synthetic + val, num_workers=2, progress=True, what="benchmark images")
    build_seconds = time.perf_counter() - started
    footprint = sum(p.stat().st_size for p in cache.folder.glob("shard-*.npy"))
    print(f"image cache: {decoded} images decoded in {build_seconds:.0f} s "
          f"({decoded / max(build_seconds, 1e-9):.0f} img/s, one-off); {footprint / 1e9:.2f} GB on disk", flush=True)
    train_images, val_images = cache.images(real + synthetic), cache.images(val)
    rng = np.random.default_rng(0)
    labels = (rng.random((len(train_images), args.classes)) < 0.2).astype(np.float32)
    val_labels = (rng.random((len(val_images), args.classes)) < 0.2).astype(np.float32)
    device = torch.cuda.get_device_name(0) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"\none epoch of one unit: {len(train_images)} images of {args.image_size} px streamed from the cache, "
          f"model {args.model}, batch {args.batch_size}, augment {'on' if args.augment else 'off'}, on {device}")
    rows = []
    for precision in args.precisions.split(","):
        bare = None
        for workers in (int(w) for w in args.num_workers.split(",")):
            config = TrainConfig(image_size=args.image_size, epochs=1, batch_size=args.batch_size, lr=1e-3,
                                 augment=args.augment, patience=1, num_workers=workers, mixed_precision=precision)
            if gpu:
                torch.cuda.reset_peak_memory_stats()
            with MemorySampler() as memory:
                began = time.perf_counter()
                train_classifier(train_images, labels, val_images, val_labels, config, progress=False)
                seconds = time.perf_counter() - began
            gpu_memory = torch.cuda.max_memory_allocated() / 1e9 if gpu else float("nan")
            if bare is None:  # after the streamed run, so that its memory is not in the streamed figures
                held = train_images.select(range(min(args.bare_images, len(train_images)))).load()
                bare = bare_rate(held, labels[:len(held)], args, config.mixed_precision)
                del held
            rate = len(train_images) / seconds
            rows.append((config.mixed_precision, workers, rate, bare, rate / bare, memory.peak_main / 1e9,
                         memory.peak_tree / 1e9, gpu_memory, seconds))
            print(f"  precision {config.mixed_precision:<4} workers {workers}: {rate:8.1f} img/s (whole call, "
                  f"{seconds:.0f} s) vs bare {bare:8.1f} img/s = {rate / bare:.2f}x; peak RSS "
                  f"{memory.peak_main / 1e9:.2f} GB (with workers {memory.peak_tree / 1e9:.2f} GB)"
                  + (f"; GPU memory {gpu_memory:.1f} GB" if gpu else ""), flush=True)
    print(f"\n{'precision':<10}{'workers':>8}{'img/s':>10}{'bare img/s':>12}{'ratio':>7}{'RSS GB':>8}"
          f"{'RSS+workers GB':>16}{'GPU GB':>8}{'epoch s':>9}")
    for precision, workers, rate, bare, ratio, main_rss, tree_rss, gpu_memory, seconds in rows:
        print(f"{precision:<10}{workers:>8}{rate:>10.1f}{bare:>12.1f}{ratio:>7.2f}{main_rss:>8.2f}{tree_rss:>16.2f}"
              f"{gpu_memory:>8.1f}{seconds:>9.0f}")


if __name__ == "__main__":
    main()
