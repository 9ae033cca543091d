"""The baseline the training benchmarks measure the harness against: one plain PyTorch training step, written as a
researcher would (autocast, gradient scaler, AdamW), shared so that every benchmark compares with the same loop."""

from __future__ import annotations

import torch

from benchmark.models.training import masked_bce


def bare_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
              x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None) -> None:
    """One optimiser step on a batch already on the model's device (autocast to ``dtype`` when given); reads the
    loss back, as the harness does every step."""
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
        loss = masked_bce(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    float(loss.detach())
