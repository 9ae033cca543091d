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

Two designs score a synthetic set (:mod:`benchmark.privacy.cli` runs them; the screen is
:mod:`benchmark.privacy.screen`, the prompt-matched design :mod:`benchmark.privacy.matched`; the thresholds, shares,
intervals and test they share are here):

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
size unless asked to allow it. A model is trained here by :func:`benchmark.privacy.training.train_reid`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
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
    percentile_interval,
)
from benchmark.data import DataError
from benchmark.fidelity.distances import DEFAULT_QUERY_CHUNK, DEFAULT_REF_CHUNK, chunked_knn, resolve_device
from benchmark.privacy.defaults import (
    ARCHITECTURES,
    DEFAULT_FMR,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_N_FEATURES,
    INPUT_SCALINGS,
)

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
                 device: str | torch.device | None = "auto", progress: str = "") -> np.ndarray:
    """Embeddings ``(N, F)`` float32 of images ``(N, 1, S, S)`` in [-1024, 1024] (model in eval mode);
    ``progress`` names the loop on a progress display (none when empty)."""
    from benchmark.core.progress import progress as progress_display

    dev = resolve_device(device)
    model = model.to(dev).eval()
    out = []
    with progress_display(len(images), progress, "img") as bar:
        for i in range(0, len(images), batch_size):
            out.append(model.embed(images[i:i + batch_size].to(dev)).float().cpu())
            bar.update(len(out[-1]))
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


# ------------------------------------------------------------------------- thresholds, shares, intervals, test

CONFIDENCE = 0.95
N_PERMUTATIONS = 9999
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
    low, high = percentile_interval(_bootstrap_means(v.size, clusters, n_resamples, seed, lambda rows: v), confidence)
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
    boot = _bootstrap_means(s.size, clusters, t.size, seed, lambda rows: s[None, :] > t[rows, None])
    b_low, b_high = percentile_interval(boot, confidence)
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
    b_low, b_high = percentile_interval(boot, confidence)
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
