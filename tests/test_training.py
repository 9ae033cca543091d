"""Training is reproducible: the same weights whatever the DataLoader workers, the torch thread count or the order in
which images are loaded (each image's augmentation has its own seed; ``cpu_threads`` fixes CPU training's threads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.models.training import TrainConfig, _Augmented, train_classifier

SIZE = 32


def _data(n: int = 48, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 2)) < 0.4).astype(np.float32)
    images = rng.normal(0, 300, (n, 1, SIZE, SIZE)).astype(np.float32)
    images[:, :, 8:24, 8:24] += 400 * labels[:, :1, None, None]  # class 0: a bright square
    return torch.from_numpy(np.clip(images, -1024, 1024)), labels


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Same weights up to float rounding (they agree bitwise on one machine; another batch order or augmentation
    draw moves them by orders of magnitude more than the tolerance)."""
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=f"{name} differs")


def test_an_images_augmentation_depends_on_its_seed_epoch_and_index_only() -> None:
    images, labels = _data(6)
    dataset = _Augmented(images, torch.from_numpy(labels), augment=True, seed=7)
    dataset.epoch = 1
    first = [dataset[i][0] for i in range(6)]
    torch.manual_seed(123)  # the global generator plays no part
    backwards = {i: dataset[i][0] for i in reversed(range(6))}
    for i in range(6):
        torch.testing.assert_close(first[i], backwards[i], rtol=0, atol=0)
    assert not torch.equal(first[0], images[0])  # it is augmented
    dataset.epoch = 2
    assert not torch.equal(dataset[0][0], first[0])  # a new draw every epoch
    other = _Augmented(images, torch.from_numpy(labels), augment=True, seed=8)
    other.epoch = 1
    assert not torch.equal(other[0][0], first[0])  # and for every training seed


@pytest.mark.slow
def test_augmented_training_gives_the_same_weights_with_zero_or_two_workers() -> None:
    images, labels = _data()
    val_images, val_labels = _data(16, seed=1)
    trained = []
    for workers in (0, 2):
        config = TrainConfig(image_size=SIZE, epochs=2, batch_size=16, lr=1e-3, seed=3, augment=True, patience=2,
                             num_workers=workers, cpu_threads=1)
        trained.append(_weights(train_classifier(images, labels, val_images, val_labels, config,
                                                 progress=False).model))
    _assert_same(*trained)


@pytest.mark.slow
def test_cpu_threads_gives_the_same_weights_whatever_torch_thread_count_the_caller_has() -> None:
    images, labels = _data()
    val_images, val_labels = _data(16, seed=1)
    before = torch.get_num_threads()
    trained = []
    try:
        for caller_threads in (1, 2):
            torch.set_num_threads(caller_threads)
            config = TrainConfig(image_size=SIZE, epochs=1, batch_size=16, lr=1e-3, seed=3, augment=False,
                                 patience=1, cpu_threads=1)
            trained.append(_weights(train_classifier(images, labels, val_images, val_labels, config,
                                                     progress=False).model))
            assert torch.get_num_threads() == caller_threads  # restored after training
    finally:
        torch.set_num_threads(before)
    _assert_same(*trained)


def test_cpu_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="cpu_threads"):
        TrainConfig(cpu_threads=0)


def test_auto_mixed_precision_is_bf16_where_the_gpu_has_it_else_fp16_and_fp32_on_cpu(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmark.models.training import resolve_mixed_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_mixed_precision("auto") == "no" and TrainConfig().mixed_precision == "no"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_mixed_precision("auto") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_mixed_precision("auto") == "fp16"
    assert resolve_mixed_precision("no") == "no" and resolve_mixed_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match="mixed precision must be one of auto, no, fp16, bf16"):
        resolve_mixed_precision("fp8")
