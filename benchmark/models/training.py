"""Training a DenseNet-121 (torchxrayvision's architecture, 1 channel) on labelled chest X-rays, through accelerate.

Multi-label training with a masked binary cross-entropy (unknown labels, NaN, do not count), optional class balance
(``loss``: positive weights; ``sampler``: a weighted sampler), light affine augmentation, AdamW, and model selection
on a *real* validation set (mean AUROC over classes, early stopping with patience). Runs on one CPU, one GPU, or DDP
over processes / GPUs / nodes when started by ``accelerate launch`` (mixed precision on GPU).

Images are a tensor in memory or :class:`benchmark.data.image_cache.CachedImages` streamed from the decoded-image
cache through DataLoader workers (same values, so the same model). On a GPU: mixed precision (``auto``: bf16 where
the GPU supports it, else fp16 with a gradient scaler), ``channels_last``, pinned memory and non-blocking copies;
``batch_size`` is per process and the learning rate is not scaled with the number of processes.

Reproducibility: the shuffle order comes from a seeded generator in the main process and each image's augmentation
from its own seed ``(seed, epoch, index)``, so neither depends on ``num_workers``. On CPU the trained weights also
depend on the intra-op thread count (oneDNN splits the convolution weight gradient's batch reduction by thread);
``cpu_threads`` fixes it for the duration of training so that numbers are the same on any machine of the same kind.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchxrayvision as xrv
from torch.utils.data import DataLoader, Dataset, TensorDataset, WeightedRandomSampler

from benchmark.core.stats import binary_metrics
from benchmark.data.image_cache import CachedImages
from benchmark.models.scoring import score_images

MIXED_PRECISION = ("auto", "no", "fp16", "bf16")


def resolve_mixed_precision(choice: str) -> str:
    """``auto``: bf16 on a GPU that supports it, else fp16 on a GPU, else ``no`` (CPU); other choices unchanged."""
    if choice not in MIXED_PRECISION:
        raise ValueError(f"mixed precision must be one of {', '.join(MIXED_PRECISION)}, got {choice!r}")
    if choice != "auto":
        return choice
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


@dataclass
class TrainConfig:
    """How to train. ``init``: None (from scratch), an xrv weights key, or a harness checkpoint folder."""

    image_size: int = 224
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    init: str | None = None
    balance: str = "none"
    augment: bool = True
    patience: int = 3
    num_workers: int = 0
    mixed_precision: str = "auto"  # resolved on creation (resolve_mixed_precision)
    cpu_threads: int | None = None

    def __post_init__(self) -> None:
        if self.balance not in ("none", "loss", "sampler"):
            raise ValueError(f"balance must be none, loss or sampler, got {self.balance!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(f"cpu_threads must be at least 1 (or None for torch's setting), got {self.cpu_threads}")
        self.mixed_precision = resolve_mixed_precision(self.mixed_precision)


@dataclass
class TrainResult:
    """The selected model (on CPU, eval mode, sigmoid outputs), the per-epoch history and the chosen epoch."""

    model: torch.nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_auroc: float = math.nan


def make_densenet(n_outputs: int, init: str | None = None) -> torch.nn.Module:
    """xrv DenseNet-121 with ``n_outputs`` logits; ``init`` loads xrv weights or a checkpoint first."""
    if init is None:
        return xrv.models.DenseNet(weights=None, num_classes=n_outputs)
    from benchmark.models.classifiers import load_classifier

    model = load_classifier(init).model
    model.classifier = torch.nn.Linear(model.classifier.in_features, n_outputs)
    model.op_threshs = None
    model.apply_sigmoid = False
    if hasattr(model, "input_resolution"):
        del model.input_resolution  # train at our own size; xrv would otherwise resize every input to 224
    return model


def load_tensors(paths: Sequence[str | Path], size: int, num_workers: int = 0, progress: str = "") -> torch.Tensor:
    """All images as one float32 tensor ``(N, 1, size, size)`` in [-1024, 1024] (range-checked); ``progress``
    names the loop on a progress display (none when empty)."""
    arrays = score_images(lambda batch: batch.flatten(1), paths, size, batch_size=64, num_workers=num_workers,
                          progress=progress)
    return torch.from_numpy(arrays).reshape(len(paths), 1, size, size)


class _Augmented(Dataset):
    """Small random affine changes (rotation, shift, scale) of each image, background filled with black.

    The change of image ``index`` in epoch ``epoch`` is drawn from its own seed ``(seed, epoch, index)``, so it is
    the same whichever DataLoader worker (and however many) loads it. Set ``epoch`` before each pass.
    """

    def __init__(self, images: torch.Tensor | CachedImages, labels: torch.Tensor, augment: bool, seed: int = 0):
        from torchvision.transforms import v2

        self.images, self.labels, self.seed, self.epoch = images, labels, seed, 0
        self.transform = (v2.RandomAffine(degrees=7, translate=(0.05, 0.05), scale=(0.93, 1.07), fill=-1024.0)
                          if augment else None)

    def __len__(self) -> int:
        return len(self.images)

    def sample_seed(self, index: int) -> int:
        """The seed of image ``index``'s augmentation in the current epoch."""
        return int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, np.uint64)[0] >> 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.transform is None:
            return image, self.labels[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.sample_seed(index))
            return self.transform(image), self.labels[index]


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: numpy's and Python's generators in a worker follow torch's worker seed (which
    comes from the loader's seeded generator), as PyTorch's reproducibility notes recommend."""
    import random

    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


@contextlib.contextmanager
def cpu_thread_count(threads: int | None, device: torch.device):
    """Run the block with ``threads`` intra-op torch threads when on CPU (``None``: leave torch's setting)."""
    if threads is None or device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean binary cross-entropy over the known labels only (``labels`` NaN where unknown)."""
    known = ~torch.isnan(labels)
    targets = torch.nan_to_num(labels, nan=0.0)
    losses = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none",
                                                                  pos_weight=pos_weight)
    return (losses * known).sum() / known.sum().clamp_min(1)


def mean_auroc(labels: np.ndarray, probabilities: np.ndarray) -> tuple[float, list[float]]:
    """Mean AUROC over classes that have both labels among the known ones; NaN for the others."""
    per_class = []
    for j in range(labels.shape[1]):
        known = ~np.isnan(labels[:, j])
        per_class.append(binary_metrics(labels[known, j], probabilities[known, j], 0.5)["auroc"] if known.any()
                         else math.nan)
    finite = [a for a in per_class if np.isfinite(a)]
    return (float(np.mean(finite)) if finite else math.nan), per_class


def train_classifier(
    train_images: torch.Tensor | CachedImages,
    train_labels: np.ndarray,
    val_images: torch.Tensor | CachedImages,
    val_labels: np.ndarray,
    config: TrainConfig,
    *,
    progress: bool = True,
    description: str = "training",
) -> TrainResult:
    """Train on ``train_*`` and select the epoch with the best mean AUROC on ``val_*`` (real images only).

    Images are tensors ``(N, 1, S, S)`` in [-1024, 1024] or the same images streamed from the image cache
    (:class:`~benchmark.data.image_cache.CachedImages`, read by ``config.num_workers`` workers); labels ``(N, C)``
    float with 1 / 0 / NaN. Under ``accelerate launch`` the batches are shared over processes (DDP); every process
    returns the same selected model. On CPU, ``config.cpu_threads`` (when set) is the intra-op thread count during
    training.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with cpu_thread_count(config.cpu_threads, device):
        return _train_classifier(train_images, train_labels, val_images, val_labels, config, progress=progress,
                                 description=description)


def _train_classifier(train_images, train_labels, val_images, val_labels, config: TrainConfig, *, progress: bool,
                      description: str) -> TrainResult:
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed

    from benchmark.core.progress import progress as progress_display
    from benchmark.fidelity.features import release_process_group_at_exit

    gpu = torch.cuda.is_available()
    accelerator = Accelerator(cpu=not gpu, mixed_precision=config.mixed_precision,
                              dataloader_config=DataLoaderConfiguration(non_blocking=gpu))
    release_process_group_at_exit()
    set_seed(config.seed, device_specific=False)
    train_x, val_x = train_images, val_images
    train_y = torch.tensor(np.asarray(train_labels, dtype=np.float32))  # a copy: the caller's array may be read-only
    val_y = np.asarray(val_labels, dtype=np.float32)
    n_outputs = train_y.shape[1]
    positives = torch.nansum(train_y, 0)
    negatives = (~torch.isnan(train_y)).sum(0) - positives
    pos_weight = (negatives / positives.clamp_min(1)).clamp(max=100.0) if config.balance == "loss" else None

    generator = torch.Generator().manual_seed(config.seed)
    dataset = _Augmented(train_x, train_y, config.augment, seed=config.seed)
    sampler = None
    if config.balance == "sampler":
        rarest = torch.nan_to_num(train_y, nan=0.0) / positives.clamp_min(1)
        weights = rarest.max(dim=1).values
        weights = torch.where(weights > 0, weights, 1.0 / negatives.max().clamp_min(1))
        sampler = WeightedRandomSampler(weights.double(), num_samples=len(dataset), replacement=True,
                                        generator=generator)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler,
                        generator=generator, num_workers=config.num_workers, worker_init_fn=seed_worker,
                        drop_last=len(dataset) > config.batch_size, pin_memory=gpu)
    model = make_densenet(n_outputs, config.init)
    memory_format = torch.channels_last if gpu else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # accelerate's scheduler wrapper steps the schedule once per process on every optimiser step (each process
    # sees 1/num_processes of the batches), so the schedule must count batches times processes.
    steps = config.epochs * max(1, math.ceil(len(loader) / accelerator.num_processes)) * accelerator.num_processes
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps, pct_start=0.15)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    if pos_weight is not None:
        pos_weight = pos_weight.to(accelerator.device)

    result = TrainResult(model=accelerator.unwrap_model(model))
    best_state: dict[str, torch.Tensor] | None = None
    epochs_without_gain = 0
    for epoch in range(1, config.epochs + 1):
        dataset.epoch = epoch  # each image's augmentation seed; workers (re)start with it every epoch
        model.train()
        total, count = 0.0, 0
        bar = progress_display(len(loader), f"{description} epoch {epoch}/{config.epochs}", "batch",
                               enabled=progress and accelerator.is_main_process, leave=False)
        for images, labels in loader:
            with accelerator.autocast():
                loss = masked_bce(model(images.contiguous(memory_format=memory_format)), labels, pos_weight)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(images)
            count += len(images)
            bar.update(1)
            bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
        bar.close()
        model.eval()
        _sync_buffers(accelerator.unwrap_model(model), accelerator)
        val_probabilities = predict_probabilities(accelerator.unwrap_model(model), val_x, accelerator.device,
                                                  max(config.batch_size, 64), config.num_workers, accelerator.autocast)
        val_auroc, per_class = _same_on_every_process(*mean_auroc(val_y, val_probabilities), accelerator)
        sums = accelerator.reduce(torch.tensor([total, float(count)], device=accelerator.device), "sum")
        train_loss = float(sums[0] / sums[1].clamp_min(1))
        result.history.append({"epoch": epoch, "train_loss": train_loss, "lr": float(scheduler.get_last_lr()[0]),
                               "val_mean_auroc": val_auroc,
                               **{f"val_auroc_{j}": a for j, a in enumerate(per_class)}})
        improved = np.isfinite(val_auroc) and (not np.isfinite(result.best_val_auroc) or
                                               val_auroc > result.best_val_auroc)
        if improved or best_state is None:
            result.best_val_auroc, result.best_epoch = val_auroc, epoch
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in
                                        accelerator.unwrap_model(model).state_dict().items()})
            epochs_without_gain = 0
        else:
            epochs_without_gain += 1
            if epochs_without_gain >= config.patience:
                break
    final = make_densenet(n_outputs, None)
    final.load_state_dict(best_state)
    final.apply_sigmoid = True
    final.eval()
    result.model = final
    accelerator.wait_for_everyone()
    return result


def _sync_buffers(model: torch.nn.Module, accelerator) -> None:
    """Give every process the main process's buffers (BatchNorm running statistics) before evaluation.

    DDP keeps the parameters identical but each process updates its running statistics from its own batches, so
    without this the processes would evaluate (and select) slightly different models.
    """
    if accelerator.num_processes > 1:
        import torch.distributed as dist

        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def _same_on_every_process(value: float, per_class: list[float], accelerator) -> tuple[float, list[float]]:
    """The main process's validation AUROCs on every process, so all take the same early-stopping decision."""
    if accelerator.num_processes == 1:
        return value, per_class
    from accelerate.utils import broadcast

    shared = broadcast(torch.tensor([value, *per_class], dtype=torch.float64, device=accelerator.device),
                       from_process=0).cpu().tolist()
    return shared[0], shared[1:]


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, images: torch.Tensor | CachedImages, device: torch.device,
                          batch_size: int = 64, num_workers: int = 0, autocast=contextlib.nullcontext,
                          sigmoid: bool = True) -> np.ndarray:
    """Probabilities float32 ``(N, C)`` for images in memory or streamed from the cache (same values either way), in
    batches of ``batch_size``; the same on every process. ``sigmoid``: apply it to the outputs (False for a model
    that applies its own)."""
    dataset = TensorDataset(images) if isinstance(images, torch.Tensor) else _Single(images)
    streamed = not isinstance(images, torch.Tensor) and len(images) > 64
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers if streamed else 0,
                        pin_memory=device.type == "cuda")
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    outputs = []
    for (batch,) in loader:
        batch = batch.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        with autocast():
            logits = model(batch)
        outputs.append((torch.sigmoid(logits.float()) if sigmoid else logits.float()).cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)


class _Single(Dataset):
    """Items of a dataset as 1-tuples (like ``TensorDataset`` of one tensor)."""

    def __init__(self, images: Dataset):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor]:
        return (self.images[index],)
