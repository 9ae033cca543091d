"""Training the same-patient verification model of :mod:`benchmark.privacy.reid` on real patients with two or more
images, selected on held-out patients.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.core.progress import track
from benchmark.fidelity.distances import resolve_device
from benchmark.models.training import cpu_thread_count
from benchmark.privacy.reid import (
    DEFAULT_N_FEATURES,
    TRAINED_INPUT_SCALING,
    SiameseReID,
    embed_images,
    verification_pairs,
    verify,
)


@dataclass
class ReidTrainConfig:
    """How to train the verification model (balanced same / different-patient pairs, BCE on the pair logit)."""

    arch: str = "resnet50"
    n_features: int = DEFAULT_N_FEATURES
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-4
    seed: int = 0
    patience: int = 3
    max_positive_per_patient: int = 20
    cpu_threads: int | None = None
    device: str = "auto"


@dataclass
class ReidTrainResult:
    """The selected model (eval mode, CPU), per-epoch history (loss, val AUROC) and the chosen epoch."""

    model: SiameseReID
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_auroc: float = math.nan


def train_reid(train_images: torch.Tensor, train_patients: Sequence[Any], val_images: torch.Tensor,
               val_patients: Sequence[Any], config: ReidTrainConfig) -> ReidTrainResult:
    """Train a :class:`SiameseReID` on pairs of ``train_images`` ``(N, 1, S, S)`` in [-1024, 1024]; select the epoch
    of best verification AUROC on ``val_images`` (other patients). Each epoch takes every same-patient pair (capped
    per patient) and as many random different-patient pairs, reshuffled from ``(seed, epoch)``. ``fc_end``'s
    weights are kept <= 0 (projected AdamW): unconstrained, the pair logit can *rise* with the difference in some
    features, and an exact copy of a training image then scores below other pairs (seen on phantoms)."""
    dev = resolve_device(config.device)
    with cpu_thread_count(config.cpu_threads, dev):
        torch.manual_seed(config.seed)
        model = SiameseReID(config.arch, config.n_features, TRAINED_INPUT_SCALING,
                            image_size=int(train_images.shape[-1])).to(dev)
        model.image_size_source = "trained here"
        with torch.no_grad():  # start monotone: a larger embedding difference never raises the probability
            model.fc_end.weight.copy_(-model.fc_end.weight.abs())
        optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        loss_fn = nn.BCEWithLogitsLoss()
        history: list[dict[str, float]] = []
        best_state, best_auc, best_epoch, stale = None, -math.inf, 0, 0
        for epoch in track(range(config.epochs), "privacy: training the re-id model", "epoch"):
            i, j, same = verification_pairs(train_patients, max_positive_per_patient=config.max_positive_per_patient,
                                            negatives_per_positive=1, min_negatives=0, seed=config.seed * 1000 + epoch)
            order = np.random.default_rng([config.seed, epoch]).permutation(len(i))
            model.train()
            losses = []
            for b0 in range(0, len(order), config.batch_size):
                pick = order[b0:b0 + config.batch_size]
                if len(pick) < 2:
                    continue
                x1 = train_images[torch.as_tensor(i[pick])].to(dev)
                x2 = train_images[torch.as_tensor(j[pick])].to(dev)
                target = torch.as_tensor(same[pick], dtype=torch.float32, device=dev)
                loss = loss_fn(model(x1, x2), target)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                with torch.no_grad():  # projected step: keep fc_end monotone, so an exact copy scores highest
                    model.fc_end.weight.clamp_(max=0.0)
                losses.append(float(loss.detach()))
            val = verify(model, embed_images(model, val_images, device=dev), val_patients, seed=config.seed)
            model.to(dev)
            history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else math.nan,
                            "val_auroc": val.auroc})
            if val.auroc > best_auc:
                best_auc, best_epoch, stale = val.auroc, epoch + 1, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if stale >= config.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
    return ReidTrainResult(model.cpu().eval(), history, best_epoch, best_auc)

