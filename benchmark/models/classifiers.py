"""Chest X-ray classifiers in torchxrayvision's DenseNet-121 architecture: xrv weights keys and our checkpoints.

A classifier takes ``(N, 1, S, S)`` float tensors in [-1024, 1024] and returns ``(N, n_outputs)`` probabilities.
xrv weights (``densenet121-res224-all``, ``-nih``, ``-pc``, ``-chex``, ``-mimic_nb``, ``-mimic_ch``, ``-rsna``)
load through ``xrv.models.DenseNet(weights=...)`` and its cache (downloaded once by xrv on a machine with
internet); their outputs are calibrated so that 0.5 is xrv's operating point. A checkpoint made by this harness
is a folder with ``config.json`` (output names, datasets trained on, input size) next to ``model.safetensors``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchxrayvision as xrv
from safetensors.torch import load_file, save_file

from benchmark.data import DataError

CHECKPOINT_CONFIG = "config.json"
CHECKPOINT_WEIGHTS = "model.safetensors"
ARCHITECTURE = "xrv-densenet121"
DENSENET_KEYS: tuple[str, ...] = tuple(k for k in xrv.models.model_urls if not k.startswith("resnet"))


@dataclass
class Classifier:
    """A loaded classifier: the module, its output names ('' for unused outputs) and where it came from."""

    model: torch.nn.Module
    outputs: list[str]
    name: str
    input_size: int
    calibrated: bool
    trained_on: tuple[str, ...] = ()

    @torch.no_grad()
    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(N, n_outputs)`` for a batch ``(N, 1, S, S)`` in [-1024, 1024]."""
        return self.model(batch)

    @torch.no_grad()
    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """Pooled DenseNet features ``(N, 1024)`` (the space of "FID (XRV)")."""
        return self.model.features2(batch)


def canonical_key(weights: str) -> str:
    """``pc`` -> ``densenet121-res224-pc``; unknown keys stop with the valid ones."""
    key = weights if weights.startswith("densenet121-") else f"densenet121-res224-{weights}"
    if key not in xrv.models.model_urls:
        raise DataError(f"unknown torchxrayvision weights {weights!r}; use one of "
                        f"{', '.join(k for k in DENSENET_KEYS if k.startswith('densenet121-'))} or a checkpoint folder")
    return key


def declared_training_data(spec: str | Path) -> tuple[str, tuple[str, ...]] | None:
    """``(name, trained_on)`` of an xrv weights key, known without loading (or downloading) its weights; None for a
    checkpoint folder, whose ``config.json`` says it once loaded. Unknown keys stop as :func:`canonical_key` does."""
    if Path(spec).exists():
        return None
    from benchmark.data.leakage import XRV_TRAINED_ON

    key = canonical_key(str(spec))
    return key, XRV_TRAINED_ON.get(key, ())


def load_xrv_densenet(weights: str, cache_dir: str | Path | None = None) -> Classifier:
    """Load xrv DenseNet-121 ``weights`` through xrv's own loader and cache (``cache_dir``: xrv's by default).

    Weights not in the cache are downloaded as torchxrayvision does; a download that fails stops with a
    :class:`DataError` naming the weights, the URL and the file to place by hand."""
    key = canonical_key(weights)
    url = xrv.models.model_urls[key]["weights_url"]
    local = Path(cache_dir if cache_dir is not None else xrv.utils.get_cache_dir()).expanduser() / Path(url).name
    try:
        model = xrv.models.DenseNet(weights=key, cache_dir=None if cache_dir is None else str(cache_dir))
    except Exception as exc:
        if local.is_file():
            raise
        raise DataError(f"torchxrayvision weights {key!r} are not in the cache ({local}) and could not be downloaded "
                        f"from {url}: {type(exc).__name__}: {exc}. Check the network, or download the file by hand "
                        f"to {local}") from exc
    model.eval()
    info = xrv.models.model_urls[key]
    from benchmark.data.leakage import XRV_TRAINED_ON

    return Classifier(model, list(info["labels"]), key, int(info.get("input_resolution", 224)), calibrated=True,
                      trained_on=XRV_TRAINED_ON.get(key, ()))


def save_checkpoint(model: torch.nn.Module, folder: str | Path, outputs: Sequence[str], *,
                    trained_on: Sequence[str], input_size: int, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (an ``xrv.models.DenseNet``) as ``folder/config.json`` + ``folder/model.safetensors``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_outputs = model.classifier.out_features
    if n_outputs != len(outputs):
        raise ValueError(f"model has {n_outputs} outputs but {len(outputs)} output names were given")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k != "op_threshs"}
    save_file(state, str(folder / CHECKPOINT_WEIGHTS))
    config = {"architecture": ARCHITECTURE, "outputs": list(outputs), "trained_on": list(trained_on),
              "input_size": int(input_size), **(extra or {})}
    (folder / CHECKPOINT_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def load_checkpoint(folder: str | Path) -> Classifier:
    """Load a checkpoint folder written by :func:`save_checkpoint`; errors name the file."""
    folder = Path(folder)
    config_path = folder / CHECKPOINT_CONFIG
    if not config_path.is_file():
        raise DataError(f"{config_path}: not found; a classifier checkpoint is a folder with {CHECKPOINT_CONFIG} "
                        f"and {CHECKPOINT_WEIGHTS}")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{config_path}: unreadable JSON ({exc})") from exc
    if config.get("architecture") != ARCHITECTURE:
        raise DataError(f"{config_path}: architecture {config.get('architecture')!r} is not {ARCHITECTURE!r}")
    outputs = list(config["outputs"])
    model = xrv.models.DenseNet(weights=None, num_classes=len(outputs), apply_sigmoid=True)
    try:
        model.load_state_dict(load_file(str(folder / CHECKPOINT_WEIGHTS)))
    except (OSError, RuntimeError) as exc:
        raise DataError(f"{folder / CHECKPOINT_WEIGHTS}: cannot load weights ({exc})") from exc
    model.eval()
    return Classifier(model, outputs, str(folder), int(config.get("input_size", 224)), calibrated=False,
                      trained_on=tuple(config.get("trained_on", ())))


def load_classifier(spec: str | Path, cache_dir: str | Path | None = None) -> Classifier:
    """An xrv weights key (``all``, ``pc``, ``densenet121-res224-nih``, ...) or a checkpoint folder."""
    path = Path(spec)
    if path.exists():
        return load_checkpoint(path)
    return load_xrv_densenet(str(spec), cache_dir)


def place_in_xrv_cache(model: torch.nn.Module, weights: str, cache_dir: str | Path) -> Path:
    """Save ``model`` where xrv's loader looks for ``weights`` in ``cache_dir`` (as xrv stores them).

    For offline use and tests: xrv then loads it through its normal path without downloading.
    """
    key = canonical_key(weights)
    filename = Path(cache_dir) / Path(xrv.models.model_urls[key]["weights_url"]).name
    filename.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model, filename)
    return filename
