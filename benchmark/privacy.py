"""Patient re-identification: does a synthetic image show a real *training* patient?

Owns the same-patient verification model (a Siamese network in CheXGenBench's layout), loading a released
checkpoint, training one on real patients with two or more images, its validation on held-out patients, and the
re-identification scores of a synthetic set.

Tensor contract: images are float32 ``(N, 1, S, S)`` in [-1024, 1024] (xrv's range, as
:func:`benchmark.training.load_tensors` returns them); the network converts them for its backbone (ResNet:
[0, 1] repeated to 3 channels, then as its ``input_scaling`` says: ``"unit"`` leaves [0, 1] as is, which is what
CheXGenBench's released checkpoint was trained on (``Resize((224, 224))`` + ``ToTensor()`` of an RGB image),
``"imagenet"`` normalises with ImageNet's mean and std (models trained here); xrv DenseNet-121: as is).
Embeddings are ``(N, F)`` in [0, 1] (sigmoid); a pair's same-patient logit is ``fc_end(|e_a - e_b|)`` and its
probability the sigmoid of it.

Scores: every synthetic image's nearest real *training* image in the re-id embedding space (Euclidean, searched
in blocks with bounded memory) and that pair's same-patient probability, its re-id score. The decision threshold
is set at a fixed false-match rate (``fmr``) on real pairs of *different* patients: each validation image with its
nearest training image (the same statistic as the synthetic score, so the search over all training images is
accounted for). Held-out real test images are scored the same way; their share above the threshold is the
chance level.
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
from sklearn.metrics import roc_curve
from torch import nn

from benchmark.data import DataError
from benchmark.fidelity import DEFAULT_QUERY_CHUNK, DEFAULT_REF_CHUNK, chunked_knn, resolve_device, wilson_interval
from benchmark.stats import bootstrap_indices, delong_ci
from benchmark.training import cpu_thread_count

ARCHITECTURES: tuple[str, ...] = ("resnet50", "densenet121", "resnet18", "resnet10")
DEFAULT_FMR = 0.01
DEFAULT_N_FEATURES = 128
DEFAULT_IMAGE_SIZE = 224
INPUT_SCALINGS: tuple[str, ...] = ("unit", "imagenet")
CHEXGENBENCH_INPUT_SCALING = "unit"  # a checkpoint without a sidecar is read as CheXGenBench's
TRAINED_INPUT_SCALING = "imagenet"
SIDECAR_FORMAT = "synthcxr-reid/1"
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
    input; the xrv DenseNet takes xrv's range and has ``"xrv"``."""

    def __init__(self, arch: str = "resnet50", n_features: int = DEFAULT_N_FEATURES,
                 input_scaling: str = TRAINED_INPUT_SCALING) -> None:
        super().__init__()
        if arch == "densenet121":
            input_scaling = "xrv"
        elif input_scaling not in INPUT_SCALINGS:
            raise ValueError(f"unknown re-id input scaling {input_scaling!r}; use one of {', '.join(INPUT_SCALINGS)}")
        self.arch = arch
        self.n_features = n_features
        self.input_scaling = input_scaling
        self.model = _backbone(arch, n_features)
        self.fc_end = nn.Linear(n_features, 1)
        self.register_buffer("_mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

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
    if not isinstance(config, dict) or config.get("format") != SIDECAR_FORMAT:
        return {}  # some other file of that name: not ours, ignore it
    return config


def load_reid_model(path: str | Path, arch: str | None = None, input_scaling: str | None = None) -> SiameseReID:
    """A :class:`SiameseReID` from a state dict file (CheXGenBench's layout, see ``EXPECTED_KEYS_HELP``), in eval
    mode on CPU. The feature count F comes from ``fc_end.weight``; ``arch`` and ``input_scaling`` from the
    arguments, else the checkpoint's sidecar (``<name>.json``, written by :func:`save_reid_model`), else
    CheXGenBench's (``resnet50``, ``"unit"``). Stops with :class:`DataError` naming the file for an unreadable
    file or a checkpoint with other keys or shapes."""
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
    return model.eval()


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
    """Each query embedding's nearest training embedding (Euclidean, in blocks: :func:`benchmark.fidelity.
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
        model = SiameseReID(config.arch, config.n_features, TRAINED_INPUT_SCALING).to(dev)
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


# ----------------------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class ReidResult:
    """Per synthetic image (``frame``: ``reid_nn`` training index, ``reid_score``, ``reid_above``), the same for
    held-out real images (``real_frame``, the chance level), the calibration and the verification."""

    frame: pd.DataFrame
    real_frame: pd.DataFrame
    threshold: float
    calibration_scores: np.ndarray
    verification: Verification | None
    fmr: float
    n_train: int
    notes: tuple[str, ...] = ()
    n_calibration_patients: int = 0


def reid_check(model: SiameseReID, synthetic: np.ndarray, train: np.ndarray, train_patients: Sequence[Any],
               val: np.ndarray, val_patients: Sequence[Any], real: np.ndarray, *, fmr: float = DEFAULT_FMR,
               seed: int = 0, device: str | torch.device | None = "auto",
               real_patients: Sequence[Any] | None = None) -> ReidResult:
    """Re-identification of every synthetic embedding (``(N, F)``) against the training embeddings.

    The threshold is the ``1 - fmr`` quantile of the val images' best training-match probability (real pairs of
    different patients: splits are by patient); when there are no val images, training images against training
    images of other patients are used instead (noted). ``real``: held-out test embeddings (chance level), of
    ``real_patients`` when given (kept in ``real_frame["patient"]``, so their CIs resample patients).
    When the calibration images are fewer than ``1 / fmr`` the threshold is in effect their maximum and the
    nominal rate cannot be resolved; a note says so, and the chance level is what the share must be read against.
    """
    if not 0.0 < fmr < 1.0:
        raise ValueError(f"fmr must be in (0, 1), got {fmr}")
    notes: list[str] = []
    if len(val):
        calib, _ = best_matches(model, val, train, device=device)
    else:
        notes.append("no val images: threshold calibrated on training images against other training patients")
        calib, _ = best_matches(model, train, train, device=device, query_groups=train_patients,
                                ref_groups=train_patients)
        calib = calib[np.isfinite(calib)]
    threshold = float(np.quantile(calib, 1.0 - fmr))
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
    n_calib_patients = len(set(val_patients)) if len(val) else len(set(train_patients))
    return ReidResult(frame(synthetic), real_frame, threshold, calib, verification, fmr, len(train), tuple(notes),
                      n_calib_patients)


def bootstrap_statistics(values: np.ndarray, *, n_resamples: int = 1000, seed: int = 0,
                         groups: Sequence[Any] | None = None) -> dict[str, float]:
    """Mean and max of ``values`` ``(N,)`` with percentile bootstrap 95% CIs (``*_ci_low``, ``*_ci_high``); NaNs
    when empty. The bootstrap resamples images, or whole ``groups`` (e.g. patients, whose images are not
    independent) when given."""
    values = np.asarray(values, dtype=np.float64)
    out: dict[str, float] = {}
    if values.size == 0:
        for name in ("mean", "max"):
            out.update({name: math.nan, f"{name}_ci_low": math.nan, f"{name}_ci_high": math.nan})
        return out
    if groups is None:
        idx = bootstrap_indices(np.zeros(values.size), n_resamples, seed, stratified=False)
        stats = {"mean": values[idx].mean(axis=1), "max": values[idx].max(axis=1)}
    else:
        members = _group_members(groups, values.size)
        picks = bootstrap_indices(np.zeros(len(members)), n_resamples, seed, stratified=False)
        sums = np.array([values[m].sum() for m in members])
        counts = np.array([len(m) for m in members])
        maxima = np.array([values[m].max() for m in members])
        stats = {"mean": sums[picks].sum(axis=1) / counts[picks].sum(axis=1), "max": maxima[picks].max(axis=1)}
    for name, fn in (("mean", np.mean), ("max", np.max)):
        stat = stats[name]
        out.update({name: float(fn(values)), f"{name}_ci_low": float(np.quantile(stat, 0.025)),
                    f"{name}_ci_high": float(np.quantile(stat, 0.975))})
    return out


def _group_members(groups: Sequence[Any], n: int) -> list[np.ndarray]:
    codes = pd.factorize(pd.Series(list(groups), dtype=object))[0]
    if len(codes) != n:
        raise ValueError(f"{len(codes)} group labels for {n} values")
    return [np.flatnonzero(codes == g) for g in range(codes.max() + 1)]


def summary_row(result: ReidResult, mask: np.ndarray | None = None, real_mask: np.ndarray | None = None, *,
                n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Result-row columns over the synthetic rows selected by ``mask`` (default all) and held-out real rows by
    ``real_mask``, for both: mean / max re-id score with a bootstrap 95% CI (over synthetic images; over patients
    for real images whose ``real_frame`` has a ``patient`` column) and the share above the threshold with the CI of
    :func:`share_interval`; the re-id model's true-match rate on val pairs with a Wilson CI."""
    syn = result.frame if mask is None else result.frame[np.asarray(mask, bool)]
    real = result.real_frame if real_mask is None else result.real_frame[np.asarray(real_mask, bool)]
    row: dict[str, Any] = {"reid_threshold": result.threshold, "reid_fmr": result.fmr,
                           "reid_n_calibration": len(result.calibration_scores), "reid_n_train": result.n_train,
                           "reid_n_synthetic": len(syn), "reid_n_real": len(real)}
    row["reid_n_calibration_patients"] = result.n_calibration_patients
    for prefix, frame in (("reid", syn), ("real_reid", real)):
        groups = frame["patient"].tolist() if "patient" in frame else None  # real images: resample patients
        scores = frame["reid_score"].to_numpy(float)
        stats = bootstrap_statistics(scores, n_resamples=n_resamples, seed=seed, groups=groups)
        row.update({f"{prefix}_{k}": v for k, v in stats.items()})
        row.update(share_interval(frame["reid_above"].to_numpy(bool), groups, prefix=f"{prefix}_share_above",
                                  n_resamples=n_resamples, seed=seed))
    v = result.verification
    if v is not None:
        tmr_low, tmr_high = wilson_interval(round(v.tmr_at_fmr * v.n_positive), v.n_positive)
        row.update({"reid_val_auroc": v.auroc, "reid_val_auroc_ci_low": v.auroc_ci_low,
                    "reid_val_auroc_ci_high": v.auroc_ci_high, "reid_pair_threshold": v.pair_threshold,
                    "reid_val_tmr_at_fmr": v.tmr_at_fmr, "reid_val_tmr_at_fmr_ci_low": tmr_low,
                    "reid_val_tmr_at_fmr_ci_high": tmr_high, "reid_val_n_positive": v.n_positive,
                    "reid_val_n_negative": v.n_negative})
    return row


def share_interval(above: np.ndarray, groups: Sequence[Any] | None = None, *, prefix: str,
                   n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``<prefix>``, its 95% CI and how it was made, for a boolean ``(N,)`` "above the threshold" per image.

    Independent images (``groups`` None, the synthetic set): the Wilson score interval over images, which stays an
    interval at a share of 0 or 1. Images grouped by patient (held-out real images): a bootstrap over patients,
    except at a share of 0 or 1, where no resample can differ, so the Wilson interval with n = the number of
    patients (the independent units) is given instead."""
    above = np.asarray(above, bool)
    n = int(above.size)
    share = float(above.mean()) if n else math.nan
    if groups is None:
        (low, high), method = wilson_interval(int(above.sum()), n), "wilson over images"
    elif 0 < above.sum() < n:
        stats = bootstrap_statistics(above.astype(float), n_resamples=n_resamples, seed=seed, groups=groups)
        (low, high), method = (stats["mean_ci_low"], stats["mean_ci_high"]), "bootstrap over patients"
    else:
        n_patients = len(set(groups))
        (low, high) = wilson_interval(share * n_patients, n_patients) if n else (math.nan, math.nan)
        method = "wilson over patients"
    return {prefix: share, f"{prefix}_ci_low": low, f"{prefix}_ci_high": high, f"{prefix}_ci_method": method}


def is_monotone(model: SiameseReID) -> bool:
    """Whether every ``fc_end`` weight is <= 0 (an exact copy then gets the model's highest probability)."""
    return bool((model.fc_end.weight <= 0).all())


def save_reid_model(model: SiameseReID, path: str | Path) -> Path:
    """Write the state dict (CheXGenBench's key layout) and, beside it, its config (``<name>.json``: backbone,
    feature count, input scaling), so that :func:`load_reid_model` reads it back as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    side = sidecar_path(path)
    side.write_text(json.dumps({"format": SIDECAR_FORMAT, "arch": model.arch, "n_features": model.n_features,
                                "input_scaling": model.input_scaling}, indent=2) + "\n")
    return path
