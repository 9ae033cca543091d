"""Patient re-identification: does a synthetic image show a real *training* patient?

Owns the same-patient verification model (a Siamese network in CheXGenBench's layout), loading a released
checkpoint, training one on real patients with two or more images, its validation on held-out patients, and the
re-identification scores of a synthetic set.

Tensor contract: images are float32 ``(N, 1, S, S)`` in [-1024, 1024] (xrv's range, as
:func:`benchmark.models.training.load_tensors` returns them); the network converts them for its backbone (ResNet:
[0, 1] repeated to 3 channels, then as its ``input_scaling`` says: ``"unit"`` leaves [0, 1] as is, which is what
CheXGenBench's released checkpoint was trained on (``Resize((224, 224))`` + ``ToTensor()`` of an RGB image),
``"imagenet"`` normalises with ImageNet's mean and std (models trained here); xrv DenseNet-121: as is).
Embeddings are ``(N, F)`` in [0, 1] (sigmoid); a pair's same-patient logit is ``fc_end(|e_a - e_b|)`` and its
probability the sigmoid of it.

Two designs score a synthetic set (:mod:`benchmark.privacy.cli` runs them):

* the *screen*: every synthetic image's nearest real *training* image in the re-id embedding space (Euclidean,
  searched in blocks with bounded memory) and that pair's same-patient probability. Its threshold is set at a fixed
  false-match rate (``fmr``) on real pairs of *different* patients: each validation image with its nearest training
  image (the same statistic, so the search over all training images is accounted for); held-out real test images
  scored the same way give a chance level. The maximum is reported without an interval (the bootstrap of an extreme
  value is inconsistent).
* the *prompt-matched* design (CheXGenBench's protocol): each synthetic image made from a *training* row against
  its own source: the source image itself when ``source_row`` names it, else the source patient's training images
  (maximum over them). Its null is taken within the synthetic set: the same synthetic image against another
  training patient with the same labels (one image of theirs, or as many images as the source patient has), drawn
  once per source patient. The threshold is the ``fmr`` quantile of single real different-patient pairs. The
  matched and null shares above it are compared by a paired sign-flip permutation test over source patients
  (:func:`paired_cluster_test`), and the threshold's uncertainty enters every share's interval by resampling the
  calibration patients (:func:`threshold_bootstrap`, :func:`share_above`).

Saved models carry a sidecar config with everything their input needs (backbone, feature count, input scaling,
channels, image size, loader); :func:`load_reid_model` restores it and :func:`resolve_image_size` refuses another
size unless asked to allow it.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats as sps
from sklearn.metrics import roc_curve
from torch import nn

from benchmark.core.stats import (
    cluster_bootstrap_weights,
    cluster_codes,
    clustered_proportion_ci,
    delong_ci,
    wilson_interval,
)
from benchmark.data import DataError
from benchmark.fidelity.distances import DEFAULT_QUERY_CHUNK, DEFAULT_REF_CHUNK, chunked_knn, resolve_device
from benchmark.models.training import cpu_thread_count

ARCHITECTURES: tuple[str, ...] = ("resnet50", "densenet121", "resnet18", "resnet10")
DEFAULT_FMR = 0.01
DEFAULT_N_FEATURES = 128
DEFAULT_IMAGE_SIZE = 224
INPUT_SCALINGS: tuple[str, ...] = ("unit", "imagenet")
CHEXGENBENCH_INPUT_SCALING = "unit"  # a checkpoint without a sidecar is read as CheXGenBench's
TRAINED_INPUT_SCALING = "imagenet"
SIDECAR_FORMAT = "synthcxr-reid/2"  # /2 adds the preprocessing (image size, channels, loader)
SIDECAR_FORMATS = ("synthcxr-reid/1", SIDECAR_FORMAT)
CHEXGENBENCH_IMAGE_SIZE = 224  # their transforms.Resize((224, 224)) + ToTensor()
LOADER = ("benchmark.models.training.load_tensors: xrv normalisation from the true bit depth to [-1024, 1024], "
          "XRayCenterCrop, XRayResizer to image_size x image_size")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
EXPECTED_KEYS_HELP = ("CheXGenBench's Siamese ResNet-50 state dict: 'model.conv1.weight' (64, 3, 7, 7), "
                      "'model.bn1.*', 'model.layer1.*' ... 'model.layer4.*', 'model.fc.weight' (F, 2048), "
                      "'model.fc.bias' (F,), 'fc_end.weight' (1, F), 'fc_end.bias' (1,); optionally wrapped in "
                      "{'state_dict': ...} and/or prefixed 'module.' (CheXGenBench's "
                      "ResNet-50_epoch11_data_handling_RPN.pth is a plain torch.save(model.state_dict()))")


class _XrvDenseNet(nn.Module):
    """torchxrayvision's DenseNet-121 trunk, global-average-pooled, then ``fc`` to ``n_features``."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        import torchxrayvision as xrv

        self.densenet = xrv.models.DenseNet(weights=None)
        self.fc = nn.Linear(1024, n_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.densenet.features(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


def _backbone(arch: str, n_features: int) -> nn.Module:
    from torchvision import models
    from torchvision.models.resnet import BasicBlock, ResNet

    if arch == "densenet121":
        return _XrvDenseNet(n_features)
    if arch == "resnet50":
        net = models.resnet50(weights=None)
    elif arch == "resnet18":
        net = models.resnet18(weights=None)
    elif arch == "resnet10":  # a small variant for tests and quick CPU runs
        net = ResNet(BasicBlock, [1, 1, 1, 1])
    else:
        raise ValueError(f"unknown re-id architecture {arch!r}; use one of {', '.join(ARCHITECTURES)}")
    net.fc = nn.Linear(net.fc.in_features, n_features)
    return net


class SiameseReID(nn.Module):
    """Same-patient verification network: ``model`` (backbone with ``fc`` to F features), ``fc_end`` (F -> 1).
    ``input_scaling`` (ResNet backbones): ``"unit"`` feeds [0, 1] (CheXGenBench), ``"imagenet"`` ImageNet-normalised
    input; the xrv DenseNet takes xrv's range and has ``"xrv"``. ``image_size``: the side S of the images it was
    trained on (None when unknown); ``image_size_source`` says where that figure came from."""

    def __init__(self, arch: str = "resnet50", n_features: int = DEFAULT_N_FEATURES,
                 input_scaling: str = TRAINED_INPUT_SCALING, image_size: int | None = None) -> None:
        super().__init__()
        if arch == "densenet121":
            input_scaling = "xrv"
        elif input_scaling not in INPUT_SCALINGS:
            raise ValueError(f"unknown re-id input scaling {input_scaling!r}; use one of {', '.join(INPUT_SCALINGS)}")
        self.arch = arch
        self.n_features = n_features
        self.input_scaling = input_scaling
        self.image_size = image_size
        self.image_size_source = "given" if image_size is not None else "unknown"
        self.model = _backbone(arch, n_features)
        self.fc_end = nn.Linear(n_features, 1)
        self.register_buffer("_mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def channels(self) -> int:
        """Input channels of the backbone: 3 (the grey image repeated) for ResNets, 1 for the xrv DenseNet."""
        return 1 if self.arch == "densenet121" else 3

    def preprocessing(self) -> dict[str, Any]:
        """Everything the input of this model depends on, as recorded in its sidecar config."""
        return {"image_size": self.image_size, "channels": self.channels, "input_scaling": self.input_scaling,
                "loader": LOADER}

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 1, S, S)`` in [-1024, 1024] to the backbone's input."""
        if self.arch == "densenet121":
            return images
        x = ((images + 1024.0) / 2048.0).expand(-1, 3, -1, -1)
        if self.input_scaling == "unit":
            return x
        return (x - self._mean) / self._std

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(N, F)`` in [0, 1]."""
        return torch.sigmoid(self.model(self.prepare(images)))

    def pair_logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Same-patient logits ``(N,)`` of embedding pairs ``a[i]``, ``b[i]``."""
        return self.fc_end((a - b).abs()).squeeze(-1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.pair_logits(self.embed(x1), self.embed(x2))


# ------------------------------------------------------------------------------------------------ loading


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(f"{path}: not a state dict of tensors; expected {EXPECTED_KEYS_HELP}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def sidecar_path(path: str | Path) -> Path:
    """Where :func:`save_reid_model` writes a checkpoint's config: ``reid_model.pt`` -> ``reid_model.json``."""
    return Path(path).with_suffix(".json")


def _read_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        config = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{side}: unreadable re-identification config ({exc})") from exc
    if not isinstance(config, dict) or config.get("format") not in SIDECAR_FORMATS:
        return {}  # some other file of that name: not ours, ignore it
    return config


def load_reid_model(path: str | Path, arch: str | None = None, input_scaling: str | None = None) -> SiameseReID:
    """A :class:`SiameseReID` from a state dict file (CheXGenBench's layout, see ``EXPECTED_KEYS_HELP``), in eval
    mode on CPU. The feature count F comes from ``fc_end.weight``; ``arch`` and ``input_scaling`` from the
    arguments, else the checkpoint's sidecar (``<name>.json``, written by :func:`save_reid_model`), else
    CheXGenBench's (``resnet50``, ``"unit"``). The image size it was trained at (``model.image_size``) comes from the
    sidecar; without one it is CheXGenBench's 224 (``image_size_source`` says which, or that an old sidecar did not
    record it: None). Stops with :class:`DataError` naming the file for an unreadable file or a checkpoint with
    other keys or shapes."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: re-identification checkpoint not found")
    sidecar = _read_sidecar(path)
    arch = arch or sidecar.get("arch") or "resnet50"
    input_scaling = input_scaling or sidecar.get("input_scaling") or CHEXGENBENCH_INPUT_SCALING
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise DataError(f"{path}: unreadable re-identification checkpoint ({exc})") from exc
    state = _unwrap_state_dict(raw, path)
    fc_end = state.get("fc_end.weight")
    if fc_end is None or fc_end.ndim != 2 or fc_end.shape[0] != 1:
        found = ", ".join(list(state)[:6]) + (" ..." if len(state) > 6 else "")
        raise DataError(f"{path}: no 'fc_end.weight' of shape (1, F) (found keys: {found}); "
                        f"expected {EXPECTED_KEYS_HELP}")
    model = SiameseReID(arch, int(fc_end.shape[1]), input_scaling)
    missing, unexpected = _key_differences(model, state)
    if missing or unexpected:
        raise DataError(f"{path}: not a {arch} re-identification checkpoint: missing keys {missing[:5]}"
                        f"{' ...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
                        f"{' ...' if len(unexpected) > 5 else ''}; expected {EXPECTED_KEYS_HELP}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DataError(f"{path}: tensor shapes do not fit a {arch} re-identification network ({exc})") from exc
    recorded = (sidecar.get("preprocessing") or {}).get("image_size")
    if recorded is not None:
        model.image_size, model.image_size_source = int(recorded), f"sidecar {sidecar_path(path)}"
    elif sidecar:
        model.image_size, model.image_size_source = None, f"not recorded (sidecar {sidecar.get('format')})"
    else:
        model.image_size = CHEXGENBENCH_IMAGE_SIZE
        model.image_size_source = "no sidecar: CheXGenBench's Resize((224, 224))"
    return model.eval()


def resolve_image_size(model: SiameseReID, requested: int | None, *, allow_mismatch: bool = False,
                       checkpoint: str | Path | None = None) -> tuple[int, str, str | None]:
    """The image size to feed ``model``, where it came from, and a warning for the result row (or None).

    ``requested`` (an explicit ``--reid-image-size``) must equal the size the model was trained at when that is
    recorded in its sidecar: another size stops with :class:`DataError` naming the checkpoint and both sizes, unless
    ``allow_mismatch``, which uses it and returns a warning. Without a request the recorded size is used (the
    default 224 when nothing is recorded)."""
    recorded, where = model.image_size, model.image_size_source
    name = str(checkpoint) if checkpoint is not None else "the re-identification model"
    sidecar_says = where.startswith("sidecar") or where == "trained here"
    if requested is None:
        if recorded is not None:
            return int(recorded), where, None
        return DEFAULT_IMAGE_SIZE, f"default {DEFAULT_IMAGE_SIZE} ({where})", (
            f"{name}: the image size it was trained at is {where}; used {DEFAULT_IMAGE_SIZE} px")
    if recorded is None:
        return int(requested), f"--reid-image-size ({where})", None
    if int(requested) == int(recorded):
        return int(requested), f"--reid-image-size (= {where})", None
    if not sidecar_says:  # CheXGenBench's size is assumed, not recorded: the user's figure stands, with a note
        return int(requested), f"--reid-image-size ({where} assumed otherwise)", (
            f"{name}: no sidecar config records its image size; used --reid-image-size {requested} "
            f"(CheXGenBench's checkpoint was trained at {CHEXGENBENCH_IMAGE_SIZE})")
    message = f"{name}: trained at {recorded} px ({where}) but --reid-image-size {requested} was given"
    if not allow_mismatch:
        raise DataError(f"{message}; a model fed another size than it was trained at gives other scores. Drop "
                        "--reid-image-size to use the recorded size, or pass --reid-allow-size-mismatch to use "
                        f"{requested} px anyway (the row then says so)")
    return int(requested), f"--reid-image-size (overrides {recorded} px: {where})", (
        f"WARNING: {message}; the scores are not those of the model as trained")


def _key_differences(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    expected = set(model.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)


# ------------------------------------------------------------------------------------------------ scoring


@torch.no_grad()
def embed_images(model: SiameseReID, images: torch.Tensor, *, batch_size: int = 64,
                 device: str | torch.device | None = "auto") -> np.ndarray:
    """Embeddings ``(N, F)`` float32 of images ``(N, 1, S, S)`` in [-1024, 1024] (model in eval mode)."""
    dev = resolve_device(device)
    model = model.to(dev).eval()
    out = [model.embed(images[i:i + batch_size].to(dev)).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.n_features), np.float32)


@torch.no_grad()
def pair_probabilities(model: SiameseReID, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Same-patient probabilities ``(N,)`` of embedding rows ``a[i]``, ``b[i]`` (both ``(N, F)``)."""
    model = model.cpu()
    logits = model.pair_logits(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32))
    return torch.sigmoid(logits).double().numpy()


def best_matches(model: SiameseReID, query: np.ndarray, train: np.ndarray, *,
                 device: str | torch.device | None = "auto", query_groups: Sequence[Any] | None = None,
                 ref_groups: Sequence[Any] | None = None, query_chunk: int = DEFAULT_QUERY_CHUNK,
                 ref_chunk: int = DEFAULT_REF_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Each query embedding's nearest training embedding (Euclidean, in blocks: :func:`benchmark.fidelity.distances.
    chunked_knn`, bounded memory, GPU when present; refs of the query's group skipped) and that pair's
    same-patient probability. Returns probabilities ``(N,)`` float64 and indices ``(N,)`` int64 into ``train``."""
    if len(query) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    _, idx = chunked_knn(query, train, 1, query_groups=query_groups, ref_groups=ref_groups, device=device,
                         query_chunk=query_chunk, ref_chunk=ref_chunk)
    idx = idx[:, 0]
    prob = np.full(len(query), np.nan)
    ok = idx >= 0
    prob[ok] = pair_probabilities(model, query[ok], train[idx[ok]])
    return prob, idx


# ----------------------------------------------------------------------------------------- verification


def verification_pairs(patients: Sequence[Any], *, max_positive_per_patient: int = 20,
                       negatives_per_positive: int = 10, min_negatives: int = 2000,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of image indices ``(i, j, same)``: every same-patient pair (at most ``max_positive_per_patient`` per
    patient, seeded) and ``max(negatives_per_positive * positives, min_negatives)`` random pairs of different
    patients (fewer when not that many exist). Raises ``ValueError`` when no patient has two images."""
    ids = np.asarray(patients).astype(str)
    rng = np.random.default_rng(seed)
    pos: list[tuple[int, int]] = []
    for _, members in pd.Series(np.arange(len(ids))).groupby(ids, sort=True):
        pairs = list(combinations(members.to_numpy().tolist(), 2))
        if len(pairs) > max_positive_per_patient:
            pairs = [pairs[k] for k in np.sort(rng.choice(len(pairs), max_positive_per_patient, replace=False))]
        pos.extend(pairs)
    if not pos:
        raise ValueError("no patient has two or more images")
    n_neg = max(negatives_per_positive * len(pos), min_negatives)
    n_neg = min(n_neg, len(ids) * (len(ids) - 1) // 2 - len(pos))
    i = rng.integers(0, len(ids), size=4 * n_neg + 16)
    j = rng.integers(0, len(ids), size=4 * n_neg + 16)
    keep = ids[i] != ids[j]
    neg_i, neg_j = i[keep][:n_neg], j[keep][:n_neg]
    p = np.asarray(pos, dtype=np.int64)
    return (np.concatenate([p[:, 0], neg_i]), np.concatenate([p[:, 1], neg_j]),
            np.concatenate([np.ones(len(p), bool), np.zeros(len(neg_i), bool)]))


@dataclass(frozen=True)
class Verification:
    """Verification on held-out real pairs: AUROC (DeLong CI), the pair threshold at ``fmr`` and the true-match
    rate there."""

    auroc: float
    auroc_ci_low: float
    auroc_ci_high: float
    pair_threshold: float
    tmr_at_fmr: float
    fmr: float
    n_positive: int
    n_negative: int


def verify(model: SiameseReID, embeddings: np.ndarray, patients: Sequence[Any], *, fmr: float = DEFAULT_FMR,
           seed: int = 0) -> Verification:
    """:class:`Verification` of ``model`` on the pairs of :func:`verification_pairs` among ``embeddings``."""
    i, j, same = verification_pairs(patients, seed=seed)
    prob = pair_probabilities(model, embeddings[i], embeddings[j])
    auc, low, high = delong_ci(same.astype(int), prob)
    fpr, tpr, thresholds = roc_curve(same.astype(int), prob)
    k = int(np.flatnonzero(fpr <= fmr)[-1])
    return Verification(auc, low, high, float(min(thresholds[k], 1.0)), float(tpr[k]), fmr,
                        int(same.sum()), int((~same).sum()))


# ------------------------------------------------------------------------------------------------ training


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
        for epoch in range(config.epochs):
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


# ------------------------------------------------------------------------- thresholds, shares, intervals, test

CONFIDENCE = 0.95
N_PERMUTATIONS = 9999
CALIBRATION_PAIRS = 5000
SHARE_CI_METHOD = ("clustered Wilson over {units} at the threshold, widened to the percentile bootstrap over {units} "
                   "and calibration patients (threshold re-derived in each resample)")
DIFFERENCE_CI_METHOD = ("paired percentile bootstrap over source patients and calibration patients (threshold "
                        "re-derived in each resample), widened to the MOVER interval of the two clustered Wilson "
                        "intervals")
TEST_METHOD = ("one-sided paired sign-flip permutation test over source patients (each patient's images flip "
               "matched / null together; exact when there are at most {n} sign patterns, else {n} random ones)")


def fmr_threshold(scores: np.ndarray, fmr: float, weights: np.ndarray | None = None) -> float | np.ndarray:
    """The threshold at false-match rate ``fmr`` on different-patient scores ``(n,)``: their ``1 - fmr`` quantile
    (inverted CDF, an observed score), so that at most ``fmr`` of them lie strictly above it. With ``weights``
    ``(B, n)`` (resamples), one threshold per resample, ``(B,)``."""
    s = np.asarray(scores, dtype=np.float64)
    if weights is None:
        return float(np.quantile(s, 1.0 - fmr, method="inverted_cdf"))
    # np.quantile(weights=..., method="inverted_cdf") row by row, with one sort shared by every resample (numpy
    # sorts each row again: 50x slower for 1000 resamples): the first sorted score whose cumulative weight reaches
    # 1 - fmr of the total
    order = np.argsort(s, kind="stable")
    cum = np.cumsum(np.asarray(weights, dtype=np.float64)[:, order], axis=1)
    first = np.argmax(cum >= (1.0 - fmr) * cum[:, -1:], axis=1)
    return s[order][first]


def _bootstrap_means(n: int, clusters: Sequence[Any] | np.ndarray | None, n_resamples: int, seed: int,
                     values: Any) -> np.ndarray:
    """``(B,)`` weighted means over patient-bootstrap resamples (:func:`benchmark.core.stats.cluster_bootstrap_weights`,
    unstratified) of ``values(rows)``: an ``(n,)`` or ``(len(rows), n)`` array for the resamples ``rows`` (a slice)."""
    out, done = [], 0
    for w in cluster_bootstrap_weights(np.zeros(n, dtype=np.int8), clusters, n_resamples, seed, stratified=False):
        c = w.shape[0]
        out.append((w * values(slice(done, done + c))).sum(axis=1) / w.sum(axis=1))
        done += c
    return np.concatenate(out) if out else np.zeros(0)


def _percentile(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1.0 - alpha))


def threshold_bootstrap(scores: np.ndarray, patients: Sequence[Any] | np.ndarray | None, fmr: float, *,
                        n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """``(B,)`` thresholds at ``fmr`` re-derived on patient-bootstrap resamples of the calibration ``scores``
    ``(n,)`` (``patients`` ``(n,)``: the calibration patient of each score; None: each score its own)."""
    s = np.asarray(scores, dtype=np.float64)
    out = [fmr_threshold(s, fmr, w) for w in cluster_bootstrap_weights(np.zeros(s.size, dtype=np.int8), patients,
                                                                       n_resamples, seed, stratified=False)]
    return np.concatenate(out) if out else np.zeros(0)


def mean_interval(values: np.ndarray, clusters: Sequence[Any] | np.ndarray | None = None, *,
                  n_resamples: int = 1000, seed: int = 0, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean of ``values`` ``(n,)`` with its percentile bootstrap interval over ``clusters`` (patients; None: the
    values themselves); NaNs when empty."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    low, high = _percentile(_bootstrap_means(v.size, clusters, n_resamples, seed, lambda rows: v), confidence)
    return float(v.mean()), low, high


def share_above(scores: np.ndarray, threshold: float, thresholds: np.ndarray,
                clusters: Sequence[Any] | np.ndarray | None = None, *, seed: int = 0, confidence: float = CONFIDENCE,
                units: str = "images") -> dict[str, Any]:
    """Share (and count) of ``scores`` ``(n,)`` strictly above ``threshold``, with an interval that holds the
    sampling of the scored images and the uncertainty of the threshold.

    Two parts, the wider of each end kept: the Wilson interval on the effective number of independent ``clusters``
    (:func:`benchmark.core.stats.clustered_proportion_ci`) at the calibrated threshold, which stays an interval at a
    share of 0 or 1; and the percentile bootstrap that resamples ``clusters`` and, jointly, takes the threshold
    ``thresholds[b]`` re-derived on resampled calibration patients (:func:`threshold_bootstrap`, ``(B,)``).
    Returns ``share``, ``count``, ``ci_low``, ``ci_high``, ``ci_method`` (NaNs when there are no scores)."""
    s = np.asarray(scores, dtype=np.float64)
    method = SHARE_CI_METHOD.format(units=units)
    if s.size == 0:
        return {"share": math.nan, "count": 0, "ci_low": math.nan, "ci_high": math.nan, "ci_method": method}
    above = s > threshold
    share, low, high = clustered_proportion_ci(above, clusters, confidence)
    t = np.asarray(thresholds, dtype=np.float64)
    b_low, b_high = _percentile(_bootstrap_means(s.size, clusters, t.size, seed,
                                                 lambda rows: s[None, :] > t[rows, None]), confidence)
    return {"share": share, "count": int(above.sum()), "ci_low": min(low, b_low), "ci_high": max(high, b_high),
            "ci_method": method}


def paired_share_difference(matched: np.ndarray, null: np.ndarray, threshold: float, thresholds: np.ndarray,
                            clusters: Sequence[Any] | np.ndarray | None = None, *, seed: int = 0,
                            confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Share of ``matched`` ``(n,)`` above ``threshold`` minus that of ``null`` ``(n,)`` (paired: the same images),
    with an interval: the paired percentile bootstrap over ``clusters`` with the threshold re-derived in each
    resample (``thresholds`` ``(B,)``), widened to Newcombe's MOVER interval for paired proportions built from the
    two clustered Wilson intervals and the correlation of the pairs (so that it stays an interval when no pair is
    discordant). Returns ``difference``, ``ci_low``, ``ci_high``, ``ci_method``."""
    a, b = np.asarray(matched, dtype=np.float64), np.asarray(null, dtype=np.float64)
    if a.size == 0:
        return {"difference": math.nan, "ci_low": math.nan, "ci_high": math.nan, "ci_method": DIFFERENCE_CI_METHOD}
    above_a, above_b = a > threshold, b > threshold
    p1, l1, u1 = clustered_proportion_ci(above_a, clusters, confidence)
    p2, l2, u2 = clustered_proportion_ci(above_b, clusters, confidence)
    both = np.stack([above_a, above_b]).astype(np.float64)
    phi = float(np.corrcoef(both)[0, 1]) if both.std(axis=1).min() > 0 else 0.0
    d = p1 - p2
    low = d - math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    high = d + math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    t = np.asarray(thresholds, dtype=np.float64)
    boot = _bootstrap_means(a.size, clusters, t.size, seed,
                            lambda rows: (a[None, :] > t[rows, None]).astype(np.float64) - (b[None, :] > t[rows, None]))
    b_low, b_high = _percentile(boot, confidence)
    return {"difference": d, "ci_low": max(-1.0, min(low, b_low)), "ci_high": min(1.0, max(high, b_high)),
            "ci_method": DIFFERENCE_CI_METHOD}


def paired_cluster_test(matched: np.ndarray, null: np.ndarray, clusters: Sequence[Any] | np.ndarray | None = None,
                        *, n_resamples: int = N_PERMUTATIONS, seed: int = 0) -> float:
    """One-sided p-value for "``matched`` exceeds ``null``" (both ``(n,)``, paired): the per-cluster sums of
    ``matched - null`` are compared with their sign-flipped copies (:func:`scipy.stats.permutation_test`; exact
    when ``2**K <= n_resamples`` for K clusters with a nonzero sum). Valid when, under the null hypothesis, the two
    members of each cluster's pairs are exchangeable (the null drawn like the match). 1.0 when no cluster differs."""
    diff = np.asarray(matched, dtype=np.float64) - np.asarray(null, dtype=np.float64)
    sums = np.bincount(cluster_codes(clusters, diff.size), weights=diff)
    sums = sums[sums != 0.0]
    if sums.size == 0:
        return 1.0
    if sums.size == 1:  # two sign patterns: the observed sum is the larger one when it is positive
        return 0.5 if sums[0] > 0 else 1.0
    result = sps.permutation_test((sums,), lambda x, axis: np.sum(x, axis=axis), permutation_type="samples",
                                  vectorized=True, n_resamples=n_resamples, alternative="greater", random_state=seed)
    return float(result.pvalue)


# ------------------------------------------------------------------------------------------------ the screen


@dataclass(frozen=True)
class ReidResult:
    """The screen. Per synthetic image (``frame``: ``reid_nn`` training index, ``reid_score``, ``reid_above``), the
    same for held-out real images (``real_frame``, the chance level), the calibration scores ``(m,)`` with their
    patients ``(m,)``, and the verification."""

    frame: pd.DataFrame
    real_frame: pd.DataFrame
    threshold: float
    calibration_scores: np.ndarray
    verification: Verification | None
    fmr: float
    n_train: int
    notes: tuple[str, ...] = ()
    n_calibration_patients: int = 0
    calibration_patients: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))


def reid_check(model: SiameseReID, synthetic: np.ndarray, train: np.ndarray, train_patients: Sequence[Any],
               val: np.ndarray, val_patients: Sequence[Any], real: np.ndarray, *, fmr: float = DEFAULT_FMR,
               seed: int = 0, device: str | torch.device | None = "auto",
               real_patients: Sequence[Any] | None = None) -> ReidResult:
    """The screen: re-identification of every synthetic embedding (``(N, F)``) against the training embeddings.

    The threshold is :func:`fmr_threshold` of the val images' best training-match probability (real pairs of
    different patients: splits are by patient); when there are no val images, training images against training
    images of other patients are used instead (noted). ``real``: held-out test embeddings (chance level), of
    ``real_patients`` when given (kept in ``real_frame["patient"]``, so their intervals resample patients).
    When the calibration images are fewer than ``1 / fmr`` the threshold is their maximum and the nominal rate
    cannot be resolved; a note says so, and the chance level is what the share must be read against.
    """
    if not 0.0 < fmr < 1.0:
        raise ValueError(f"fmr must be in (0, 1), got {fmr}")
    notes: list[str] = []
    if len(val):
        calib, _ = best_matches(model, val, train, device=device)
        calib_patients = np.asarray(val_patients).astype(str)
    else:
        notes.append("no val images: threshold calibrated on training images against other training patients")
        calib, _ = best_matches(model, train, train, device=device, query_groups=train_patients,
                                ref_groups=train_patients)
        keep = np.isfinite(calib)
        calib, calib_patients = calib[keep], np.asarray(train_patients).astype(str)[keep]
    threshold = fmr_threshold(calib, fmr)
    if len(calib) * fmr < 1.0:
        notes.append(f"only {len(calib)} calibration images for a false-match rate of {fmr:g} (needs >= "
                     f"{math.ceil(1 / fmr)}): the threshold is about their maximum; read the share against the "
                     "held-out real chance level, not against the nominal rate")
    verification = None
    try:
        verification = verify(model, val, val_patients, fmr=fmr, seed=seed) if len(val) else None
    except ValueError:
        notes.append("verification AUROC not computed: no val patient has two images")

    def frame(emb: np.ndarray) -> pd.DataFrame:
        prob, idx = best_matches(model, emb, train, device=device)
        return pd.DataFrame({"reid_nn": idx, "reid_score": prob, "reid_above": prob > threshold})

    real_frame = frame(real)
    if real_patients is not None:
        if len(real_patients) != len(real):
            raise ValueError(f"{len(real_patients)} real patients for {len(real)} real embeddings")
        real_frame["patient"] = list(real_patients)
    return ReidResult(frame(synthetic), real_frame, threshold, calib, verification, fmr, len(train), tuple(notes),
                      len(set(calib_patients.tolist())), calib_patients)


def summary_row(result: ReidResult, mask: np.ndarray | None = None, real_mask: np.ndarray | None = None, *,
                thresholds: np.ndarray | None = None, synthetic_clusters: Sequence[Any] | np.ndarray | None = None,
                synthetic_units: str = "synthetic images", n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The screen's result-row columns over the synthetic rows selected by ``mask`` (default all) and held-out real
    rows by ``real_mask``: mean re-id score with a bootstrap 95% CI (over ``synthetic_clusters`` ``(N,)`` when
    given, e.g. source patients, else images; over patients for real images whose ``real_frame`` has a
    ``patient`` column), the maximum (no interval), the count and share above the threshold with the interval of
    :func:`share_above` (``thresholds``: :func:`threshold_bootstrap` of the calibration, computed when not
    given); the threshold with its bootstrap interval; the re-id model's true-match rate on val pairs (Wilson)."""
    if thresholds is None:
        thresholds = threshold_bootstrap(result.calibration_scores, result.calibration_patients, result.fmr,
                                         n_resamples=n_resamples, seed=seed)
    sel = np.ones(len(result.frame), bool) if mask is None else np.asarray(mask, bool)
    syn = result.frame[sel]
    real = result.real_frame if real_mask is None else result.real_frame[np.asarray(real_mask, bool)]
    t_low, t_high = _percentile(thresholds)
    row: dict[str, Any] = {"reid_threshold": result.threshold, "reid_threshold_ci_low": t_low,
                           "reid_threshold_ci_high": t_high, "reid_fmr": result.fmr,
                           "reid_n_calibration": len(result.calibration_scores), "reid_n_train": result.n_train,
                           "reid_n_synthetic": len(syn), "reid_n_real": len(real),
                           "reid_n_calibration_patients": result.n_calibration_patients}
    syn_clusters = None if synthetic_clusters is None else np.asarray(synthetic_clusters).astype(str)[sel]
    real_clusters = real["patient"].astype(str).to_numpy() if "patient" in real else None
    for prefix, frame, clusters, units in (("reid", syn, syn_clusters, synthetic_units),
                                           ("real_reid", real, real_clusters,
                                            "patients" if real_clusters is not None else "images")):
        scores = frame["reid_score"].to_numpy(float)
        mean, low, high = mean_interval(scores, clusters, n_resamples=n_resamples, seed=seed)
        row.update({f"{prefix}_mean": mean, f"{prefix}_mean_ci_low": low, f"{prefix}_mean_ci_high": high,
                    f"{prefix}_max": float(scores.max()) if scores.size else math.nan})
        share = share_above(scores, result.threshold, thresholds, clusters, seed=seed, units=units)
        row.update({f"{prefix}_count_above": share["count"], f"{prefix}_share_above": share["share"],
                    f"{prefix}_share_above_ci_low": share["ci_low"], f"{prefix}_share_above_ci_high": share["ci_high"],
                    f"{prefix}_share_above_ci_method": share["ci_method"]})
    v = result.verification
    if v is not None:
        tmr_low, tmr_high = wilson_interval(round(v.tmr_at_fmr * v.n_positive), v.n_positive)
        row.update({"reid_val_auroc": v.auroc, "reid_val_auroc_ci_low": v.auroc_ci_low,
                    "reid_val_auroc_ci_high": v.auroc_ci_high, "reid_pair_threshold": v.pair_threshold,
                    "reid_val_tmr_at_fmr": v.tmr_at_fmr, "reid_val_tmr_at_fmr_ci_low": tmr_low,
                    "reid_val_tmr_at_fmr_ci_high": tmr_high, "reid_val_n_positive": v.n_positive,
                    "reid_val_n_negative": v.n_negative})
    return row


# ---------------------------------------------------------------------------------- the prompt-matched design

SOURCE_IMAGE = "source image"
SOURCE_PATIENT = "source patient"


def label_strata(labels: np.ndarray) -> np.ndarray:
    """One stratum key per row of a label matrix ``(N, C)`` (1 / 0 / NaN): the labels as text, e.g. ``"1,0,"``."""
    lab = np.asarray(labels, dtype=np.float64)
    text = np.where(np.isnan(lab), "", np.where(lab > 0.5, "1", "0"))
    return np.array([",".join(r) for r in text], dtype=object) if lab.ndim == 2 and lab.shape[1] else \
        np.full(len(lab), "", dtype=object)


def draw_references(source_train: np.ndarray, source_patients: Sequence[str], train_patients: Sequence[Any],
                    synthetic_strata: Sequence[str], train_strata: Sequence[str], *, seed: int = 0) -> pd.DataFrame:
    """What each synthetic image of the prompt-matched design is compared with, and its null.

    Args:
        source_train: ``(N,)`` the training position (index into ``train_patients``) of each synthetic image's
            source row, -1 where it has none. source_patients: ``(N,)`` its source patient ("" where unknown).
        train_patients: ``(R,)``. synthetic_strata ``(N,)`` / train_strata ``(R,)``: label keys
            (:func:`label_strata`) of the synthetic images (their prompt's labels) and of the training images.

    An image with a source row is compared with that image (``reference`` "source image"), one with only a source
    patient with all of that patient's training images (maximum over them, "source patient"). The null: for each
    source patient (and label stratum and reference kind) one other training patient Q is drawn, among those with
    an image of the same labels (and, for "source patient", at least as many images); each source row gets one of
    Q's images of those labels (every image made from that row is compared with it), a "source patient" image as
    many of Q's images as the source patient has. Where no such patient exists the labels, then the image count,
    are let go (``null_match``). Images without a training source are left out.

    Returns:
        One row per synthetic image in the design, indexed by its position: ``source_patient``, ``reference``,
        ``matched_refs`` and ``null_refs`` (int arrays of training positions), ``null_patient``, ``null_match``.
    """
    rng = np.random.default_rng([seed, 23])
    train_ids = np.asarray(train_patients).astype(str)
    t_strata = np.asarray(train_strata).astype(str)
    patients, codes = np.unique(train_ids, return_inverse=True)
    members = [np.flatnonzero(codes == k) for k in range(len(patients))]
    counts = np.array([len(m) for m in members])
    in_stratum = {s: np.unique(codes[t_strata == s]) for s in np.unique(t_strata)}
    src = np.asarray(source_train, dtype=np.int64)
    src_patients = np.asarray(source_patients).astype(str)
    syn_strata = np.asarray(synthetic_strata).astype(str)
    design = np.flatnonzero((src_patients != "") & np.isin(src_patients, patients))
    kinds = np.where(src[design] >= 0, SOURCE_IMAGE, SOURCE_PATIENT)
    units = pd.DataFrame({"i": design, "patient": src_patients[design], "stratum": syn_strata[design], "kind": kinds,
                          "row": src[design]})
    records: dict[int, dict[str, Any]] = {}
    for (patient, stratum, kind), unit in units.groupby(["patient", "stratum", "kind"], sort=True):
        own = int(np.searchsorted(patients, patient))
        k = 1 if kind == SOURCE_IMAGE else int(counts[own])
        null, match = _draw_other(own, k, in_stratum.get(stratum, np.zeros(0, np.int64)), counts, rng)
        if null < 0:
            continue  # one training patient only: no null exists
        pool = members[null]
        if kind == SOURCE_IMAGE:
            labelled = pool[t_strata[pool] == stratum] if match == "same labels" else pool
            for row, images in unit.groupby("row", sort=True):
                null_ref = np.array([rng.choice(labelled)], dtype=np.int64)
                for i in images["i"]:
                    records[int(i)] = {"matched_refs": np.array([row], dtype=np.int64), "null_refs": null_ref}
        else:
            for i in unit["i"]:
                records[int(i)] = {"matched_refs": members[own],
                                   "null_refs": np.sort(rng.choice(pool, size=min(k, len(pool)), replace=False))}
        for i in unit["i"]:
            records[int(i)].update({"source_patient": patient, "reference": kind, "null_patient": patients[null],
                                    "null_match": match})
    frame = pd.DataFrame.from_dict(records, orient="index")
    if frame.empty:
        frame = pd.DataFrame(columns=["source_patient", "reference", "matched_refs", "null_refs", "null_patient",
                                      "null_match"])
    return frame.sort_index()[["source_patient", "reference", "matched_refs", "null_refs", "null_patient",
                               "null_match"]]


def _draw_other(own: int, k: int, same_labels: np.ndarray, counts: np.ndarray,
                rng: np.random.Generator) -> tuple[int, str]:
    """A random patient code other than ``own`` with at least ``k`` images, among ``same_labels`` first."""
    everyone = np.arange(len(counts))
    for match, pool in (("same labels", same_labels), ("any labels", everyone)):
        candidates = pool[(pool != own) & (counts[pool] >= k)]
        if candidates.size:
            return int(rng.choice(candidates)), match
    others = everyone[everyone != own]
    return (int(rng.choice(others)), "fewer images") if others.size else (-1, "none")


def calibration_pairs(query_patients: Sequence[Any], ref_patients: Sequence[Any], *,
                      n_pairs: int = CALIBRATION_PAIRS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random pairs ``(i, j)`` of a query image and a reference image of *different* patients, about ``n_pairs``
    (each query image the same number of times, at least once). Returns index arrays into the two sets."""
    q, r = np.asarray(query_patients).astype(str), np.asarray(ref_patients).astype(str)
    if q.size == 0 or r.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rng = np.random.default_rng([seed, 29])
    i = np.repeat(np.arange(q.size), max(1, math.ceil(n_pairs / q.size)))
    j = rng.integers(0, r.size, size=i.size)
    for _ in range(20):  # redraw the references that happen to be the query's own patient
        same = q[i] == r[j]
        if not same.any():
            break
        j[same] = rng.integers(0, r.size, size=int(same.sum()))
    keep = q[i] != r[j]
    return i[keep], j[keep]


@dataclass(frozen=True)
class MatchedResult:
    """The prompt-matched design: ``frame`` (:func:`draw_references`' rows plus ``n_reference``,
    ``matched_score``, ``null_score``), the threshold at ``fmr`` on single real different-patient pairs with the
    calibration scores ``(m,)`` and patients ``(m,)``, and how many synthetic images had no training source."""

    frame: pd.DataFrame
    threshold: float
    calibration_scores: np.ndarray
    calibration_patients: np.ndarray
    fmr: float
    n_excluded: int
    notes: tuple[str, ...] = ()


def _max_scores(model: SiameseReID, synthetic: np.ndarray, train: np.ndarray, positions: np.ndarray,
                refs: Sequence[np.ndarray]) -> np.ndarray:
    lengths = np.array([len(r) for r in refs], dtype=np.int64)
    if lengths.size == 0:
        return np.zeros(0)
    prob = pair_probabilities(model, synthetic[np.repeat(positions, lengths)], train[np.concatenate(refs)])
    return np.maximum.reduceat(prob, np.r_[0, np.cumsum(lengths)[:-1]])


def matched_design(model: SiameseReID, synthetic: np.ndarray, train: np.ndarray, train_patients: Sequence[Any],
                   references: pd.DataFrame, val: np.ndarray, val_patients: Sequence[Any], *,
                   fmr: float = DEFAULT_FMR, seed: int = 0) -> MatchedResult:
    """Scores of the prompt-matched design from embeddings (``synthetic`` ``(N, F)``, ``train`` ``(R, F)``, ``val``
    ``(V, F)``) and :func:`draw_references`' rows: each image's maximum same-patient probability over its matched
    references and over its null references. The threshold is :func:`fmr_threshold` of :func:`calibration_pairs`
    of val images with training images (single pairs of different patients; training images with other training
    patients when there are no val images, noted). For "source patient" images the maximum over k references is
    compared with the same threshold, so their false-match rate is up to k times ``fmr``: the null, drawn with the
    same k, carries the same rate, and the test compares with the null."""
    if not 0.0 < fmr < 1.0:
        raise ValueError(f"fmr must be in (0, 1), got {fmr}")
    notes: list[str] = []
    train_ids = np.asarray(train_patients).astype(str)
    if len(val):
        val_ids = np.asarray(val_patients).astype(str)
        i, j = calibration_pairs(val_ids, train_ids, seed=seed)
        calib, calib_patients = pair_probabilities(model, val[i], train[j]), val_ids[i]
    else:
        notes.append("matched design: no val images, threshold calibrated on training pairs of different patients")
        i, j = calibration_pairs(train_ids, train_ids, seed=seed)
        calib, calib_patients = pair_probabilities(model, train[i], train[j]), train_ids[i]
    if calib.size == 0:
        raise ValueError("no calibration pairs of different patients")
    threshold = fmr_threshold(calib, fmr)
    frame = references.copy()
    positions = frame.index.to_numpy(dtype=np.int64)
    frame["n_reference"] = [len(r) for r in frame["matched_refs"]]
    frame["matched_score"] = _max_scores(model, synthetic, train, positions, list(frame["matched_refs"]))
    frame["null_score"] = _max_scores(model, synthetic, train, positions, list(frame["null_refs"]))
    if (frame["null_match"] != "same labels").any():
        counts = frame["null_match"].value_counts()
        notes.append("matched design: null patient without the same labels for "
                     + ", ".join(f"{int(counts.get(m, 0))} images ({m})" for m in ("any labels", "fewer images")
                                 if counts.get(m, 0)))
    return MatchedResult(frame, threshold, calib, calib_patients, fmr, len(synthetic) - len(frame), tuple(notes))


def matched_summary(result: MatchedResult, mask: np.ndarray | None = None, *, thresholds: np.ndarray | None = None,
                    n_resamples: int = 1000, seed: int = 0, n_permutations: int = N_PERMUTATIONS) -> dict[str, Any]:
    """Result-row columns (``matched_*``) of the prompt-matched design over the design's rows selected by ``mask``
    (default all): CheXGenBench's mean and max re-id score and count above the threshold; the matched and null
    shares above it with :func:`share_above` intervals; their paired difference (:func:`paired_share_difference`)
    and the one-sided :func:`paired_cluster_test` on the above/below pairs and on the scores, clustered by source
    patient. ``thresholds``: :func:`threshold_bootstrap` of the calibration (computed when not given)."""
    if thresholds is None:
        thresholds = threshold_bootstrap(result.calibration_scores, result.calibration_patients, result.fmr,
                                         n_resamples=n_resamples, seed=seed)
    f = result.frame if mask is None else result.frame[np.asarray(mask, bool)]
    row: dict[str, Any] = {"matched_n_synthetic": len(f)}
    if len(f) == 0:
        return row
    m, n = f["matched_score"].to_numpy(float), f["null_score"].to_numpy(float)
    clusters = f["source_patient"].astype(str).to_numpy()
    kinds = f["reference"].value_counts()
    reference = (kinds.index[0] if len(kinds) == 1 else
                 "mixed: " + ", ".join(f"{int(c)} {k}" for k, c in kinds.items()))
    if SOURCE_PATIENT in kinds.index:
        reference += " (max over their training images)"
    t, (t_low, t_high) = result.threshold, _percentile(thresholds)
    mean, low, high = mean_interval(m, clusters, n_resamples=n_resamples, seed=seed)
    null_mean, null_low, null_high = mean_interval(n, clusters, n_resamples=n_resamples, seed=seed)
    row.update({"matched_reference": reference, "matched_n_source_patients": len(set(clusters)),
                "matched_reid_threshold": t, "matched_reid_threshold_ci_low": t_low,
                "matched_reid_threshold_ci_high": t_high, "matched_n_calibration_pairs": len(result.calibration_scores),
                "matched_n_calibration_patients": len(set(result.calibration_patients.tolist())),
                "matched_reid_mean": mean, "matched_reid_mean_ci_low": low, "matched_reid_mean_ci_high": high,
                "matched_reid_max": float(m.max()), "matched_reid_count_above": int((m > t).sum()),
                "matched_reid_count_above_half": int((m > 0.5).sum()),
                "matched_null_reid_mean": null_mean, "matched_null_reid_mean_ci_low": null_low,
                "matched_null_reid_mean_ci_high": null_high, "matched_null_reid_max": float(n.max()),
                "matched_null_reid_count_above": int((n > t).sum())})
    units = "source patients"
    for prefix, scores in (("matched_reid", m), ("matched_null_reid", n)):
        share = share_above(scores, t, thresholds, clusters, seed=seed, units=units)
        row.update({f"{prefix}_share_above": share["share"], f"{prefix}_share_above_ci_low": share["ci_low"],
                    f"{prefix}_share_above_ci_high": share["ci_high"],
                    f"{prefix}_share_above_ci_method": share["ci_method"]})
    diff = paired_share_difference(m, n, t, thresholds, clusters, seed=seed)
    row.update({"matched_share_difference": diff["difference"], "matched_share_difference_ci_low": diff["ci_low"],
                "matched_share_difference_ci_high": diff["ci_high"],
                "matched_share_difference_ci_method": diff["ci_method"],
                "matched_p_value": paired_cluster_test(m > t, n > t, clusters, n_resamples=n_permutations, seed=seed),
                "matched_score_p_value": paired_cluster_test(m, n, clusters, n_resamples=n_permutations, seed=seed),
                "matched_test": TEST_METHOD.format(n=n_permutations),
                "matched_null": ("the same synthetic image against another training patient drawn per source patient "
                                 "among those with the same labels (" + ", ".join(
                                     f"{int(c)} {k}" for k, c in f["null_match"].value_counts().items()) + ")")})
    return row


def is_monotone(model: SiameseReID) -> bool:
    """Whether every ``fc_end`` weight is <= 0 (an exact copy then gets the model's highest probability)."""
    return bool((model.fc_end.weight <= 0).all())


def save_reid_model(model: SiameseReID, path: str | Path) -> Path:
    """Write the state dict (CheXGenBench's key layout) and, beside it, its config (``<name>.json``: backbone,
    feature count, input scaling and ``preprocessing``: image size, channels, loader), so that
    :func:`load_reid_model` reads it back as it was trained."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    side = sidecar_path(path)
    side.write_text(json.dumps({"format": SIDECAR_FORMAT, "arch": model.arch, "n_features": model.n_features,
                                "input_scaling": model.input_scaling, "preprocessing": model.preprocessing()},
                               indent=2) + "\n")
    return path
