"""Image features for the image-quality stage: the extractors, batched extraction over accelerate processes, and
the content-addressed feature cache.

Extractors (:func:`load_extractor`):

* ``xrv`` (default): torchxrayvision DenseNet-121, any xrv weights key or a checkpoint of this harness, loaded
  with :func:`benchmark.models.classifiers.load_classifier`; features are its pooled 1,024-d ``features2`` output, the
  space of "FID (XRV)" / FXD. Inputs are :func:`benchmark.data.preprocess.xrv_input` at the model's resolution (224);
  ``image_size`` runs the network at another size instead (recorded in the extractor's name).
* ``inception``: torchmetrics' ``NoTrainInceptionV3`` (2,048-d pool features, needs ``torch-fidelity``).
* ``raddino``: RAD-DINO through transformers (``microsoft/rad-dino`` or a local folder; the CLS ``pooler_output``).
* ``raddino-chexgenbench``: the same network fed as CheXGenBench's ``metrics/fid.py`` feeds it (squashed to 299 x 299,
  uint8 by truncation, then the image processor): their protocol's feature space (``--protocol chexgenbench``).
* ``pixels``: the image itself, centre-cropped and area-resized to ``image_size`` (default 64) in [0, 1] float
  from the true bit depth; used by the memorisation check.

The cache (:class:`FeatureCache`) stores each image's features under the SHA-256 of the file's bytes, in a folder
per extractor whose name hashes the extractor's weights fingerprint (a hash of every parameter) and its
preprocessing, so a re-run, another metric or another set that shares files reuses them, and different weights
or sizes never mix. Root: ``cache_dir``, else ``$SYNTHCXR_CACHE/features``, else ``<results>/cache/features``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchxrayvision as xrv
from torch.utils.data import DataLoader, Dataset

from benchmark.core.results import cache_dir
from benchmark.data import DataError, ImageLoadError, XrayImage, load_image
from benchmark.data.preprocess import check_xrv_range, xrv_input
from benchmark.fidelity.defaults import DEFAULT_PIXEL_SIZE, EXTRACTORS
from benchmark.models.classifiers import load_classifier

DEFAULT_XRV_WEIGHTS = "densenet121-res224-all"
DEFAULT_RADDINO = "microsoft/rad-dino"
INCEPTION_SIZE = 299
FLUSH_EVERY = 4096


class ExtractorUnavailableError(DataError):
    """An optional extractor cannot be built here (package or weights missing); the message says what to do."""


@dataclass(frozen=True)
class FeatureExtractor:
    """One feature space. ``prepare`` turns a decoded image into one model input (a numpy array, all of one
    shape); ``embed`` maps a batch of them (on ``device``) to ``(N, dim)`` features; ``check`` (optional) is called
    on every batch with a description of its first file."""

    kind: str
    name: str
    weights: str
    fingerprint: str
    preprocessing: str
    dim: int
    prepare: Callable[[XrayImage], np.ndarray]
    embed: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    check: Callable[[torch.Tensor, str], None] | None = None
    trained_on: tuple[str, ...] = ()
    input_size: int = 0  # the network's input side in pixels (0: not known)

    @property
    def cache_key(self) -> str:
        """Folder name of this space in the cache: readable prefix + hash of fingerprint and preprocessing."""
        digest = hashlib.sha256(f"{self.fingerprint}|{self.preprocessing}".encode()).hexdigest()[:16]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(self.weights).name or self.weights)[:48]
        return f"{self.kind}-{slug}-{digest}"

    def describe(self) -> dict[str, Any]:
        """Plain-data description for result rows and the cache folder's ``space.json``."""
        return {"kind": self.kind, "name": self.name, "weights": self.weights, "fingerprint": self.fingerprint,
                "preprocessing": self.preprocessing, "dim": self.dim, "trained_on": list(self.trained_on)}


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 (hex) over every parameter and buffer of ``model`` (names, shapes, dtypes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tuple(tensor.shape)}|{t.dtype}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------
# Preparation of one image (module-level so DataLoader workers can pickle them)
# ----------------------------------------------------------------------------------------------------


def square_float(image: XrayImage) -> np.ndarray:
    """Float32 ``(S, S)`` in [0, 1] from the true bit depth, centre-cropped to a square (xrv's crop)."""
    return xrv.datasets.XRayCenterCrop()(image.to_float()[None])[0]


def _xrv_prepare(image: XrayImage, size: int) -> np.ndarray:
    return xrv_input(image, size)


def pixel_input(image: XrayImage, size: int = DEFAULT_PIXEL_SIZE) -> np.ndarray:
    """Float32 ``(1, size, size)`` in [0, 1]: true-bit-depth scaling, centre crop, area resize."""
    square = torch.from_numpy(np.ascontiguousarray(square_float(image)))[None, None]
    if square.shape[-1] != size:
        square = torch.nn.functional.interpolate(square, size=(size, size), mode="area")
    return square[0].numpy().astype(np.float32, copy=False)


def _inception_prepare(image: XrayImage) -> np.ndarray:
    square = torch.from_numpy(np.ascontiguousarray(square_float(image)))[None, None]
    resized = torch.nn.functional.interpolate(square, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear",
                                              antialias=True, align_corners=False)
    grey = (resized[0].clamp(0, 1) * 255.0).round().to(torch.uint8)
    return grey.expand(3, -1, -1).numpy().copy()


def _raddino_prepare(image: XrayImage, processor: Any) -> np.ndarray:
    rgb = np.repeat(image.to_float()[:, :, None], 3, axis=2)
    out = processor(images=rgb, return_tensors="np", do_rescale=False)["pixel_values"][0]
    return np.asarray(out, dtype=np.float32)


CHEXGENBENCH_SIZE = 299


def chexgenbench_pixels(image: XrayImage) -> np.ndarray:
    """The uint8 ``(3, 299, 299)`` tensor CheXGenBench's ``metrics/fid.py`` hands RAD-DINO's image processor: the file
    opened by PIL and converted to RGB (colour kept; a 16-bit image clipped at 255, as PIL does), *squashed* to
    299 x 299 (PIL bilinear, aspect ratio not kept), ``ToTensor`` and ``(x * 255).to(torch.uint8)`` (truncation, not
    rounding). A file PIL cannot open (DICOM, which their loader cannot read either) starts from the decoded
    greyscale pixels instead."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image.path) as opened:
            rgb = opened.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        pixels = image.pixels.astype(np.uint16 if image.bit_depth == 16 else np.uint8)
        rgb = Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB")  # mode I;16 or L, as PIL would open it
    rgb = rgb.resize((CHEXGENBENCH_SIZE, CHEXGENBENCH_SIZE), Image.BILINEAR)
    scaled = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)
    return (scaled * 255).to(torch.uint8).numpy()


def _chexgenbench_prepare(image: XrayImage, processor: Any) -> np.ndarray:
    out = processor(images=torch.from_numpy(chexgenbench_pixels(image))[None], return_tensors="np")["pixel_values"][0]
    return np.asarray(out, dtype=np.float32)


def _flatten(batch: torch.Tensor) -> torch.Tensor:
    return batch.flatten(1)


# ----------------------------------------------------------------------------------------------------
# Extractors
# ----------------------------------------------------------------------------------------------------


def process_state() -> Any:
    """This process's ``accelerate.PartialState``: one process normally, several under ``accelerate launch`` /
    ``torchrun`` (gloo on CPU when no GPU is present or ``ACCELERATE_USE_CPU`` is set)."""
    from accelerate import PartialState

    cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    state = PartialState(cpu=cpu)
    release_process_group_at_exit()
    return state


def release_process_group_at_exit() -> None:
    """Destroy the torch.distributed process group (if one was started) when the interpreter exits.

    A gloo group left to the interpreter's teardown can abort a process after its work is done ("terminate called
    without an active exception", SIGABRT), which turns a finished ``torchrun`` run into a failed one. Idempotent.
    """
    import atexit

    global _RELEASE_REGISTERED
    if not _RELEASE_REGISTERED:
        atexit.register(_destroy_process_group)
        _RELEASE_REGISTERED = True


_RELEASE_REGISTERED = False


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _default_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return process_state().device
    return torch.device(device)


def load_extractor(kind: str = "xrv", weights: str | None = None, *, image_size: int | None = None,
                   device: str | torch.device | None = "auto",
                   xrv_cache_dir: str | Path | None = None) -> FeatureExtractor:
    """Build the ``kind`` extractor (one of :data:`EXTRACTORS`).

    ``weights``: an xrv key or checkpoint folder (``xrv``), a local Inception weights file (``inception``), a
    Hugging Face id or folder (``raddino``); unused for ``pixels``. ``image_size``: network input size for
    ``xrv`` (default: the model's own) or the side of the pixel vectors (``pixels``, default 64).
    ``device="auto"``: this accelerate process's device (a GPU when present). Raises
    :class:`ExtractorUnavailableError` when an optional package or its weights are missing.
    """
    dev = _default_device(device)
    if kind == "xrv":
        classifier = load_classifier(weights or DEFAULT_XRV_WEIGHTS, cache_dir=xrv_cache_dir)
        model = classifier.model.eval()
        size = int(image_size or classifier.input_size)
        label = Path(classifier.name).name if Path(classifier.name).exists() else classifier.name
        if size != classifier.input_size:
            if hasattr(model, "input_resolution"):
                model.input_resolution = size  # run at `size` instead of xrv's resize to its native resolution
            label = f"{label}@{size}px"
        fingerprint = model_fingerprint(model)
        model.to(dev)
        return FeatureExtractor(
            kind="xrv", name=f"xrv:{label}", weights=str(weights or DEFAULT_XRV_WEIGHTS), fingerprint=fingerprint,
            preprocessing=f"benchmark.data.preprocess.xrv_input(size={size}) -> DenseNet features2 at {size}px",
            dim=int(model.classifier.in_features), prepare=functools.partial(_xrv_prepare, size=size),
            embed=classifier.features, device=dev, check=check_xrv_range, trained_on=tuple(classifier.trained_on),
            input_size=size)
    if kind == "pixels":
        size = int(image_size or DEFAULT_PIXEL_SIZE)
        preprocessing = f"float [0,1] from true bit depth, xrv centre crop, area resize to {size}x{size}"
        return FeatureExtractor(
            kind="pixels", name=f"pixels@{size}px", weights="none",
            fingerprint=hashlib.sha256(preprocessing.encode()).hexdigest(), preprocessing=preprocessing,
            dim=size * size, prepare=functools.partial(pixel_input, size=size), embed=_flatten, device=dev,
            input_size=size)
    if kind == "inception":
        return _load_inception(weights, dev)
    if kind == "raddino":
        return _load_raddino(weights or DEFAULT_RADDINO, dev)
    if kind == "raddino-chexgenbench":
        return _load_raddino(weights or DEFAULT_RADDINO, dev, chexgenbench=True)
    raise DataError(f"unknown feature extractor {kind!r}; use one of {', '.join(EXTRACTORS)}")


def _load_inception(weights: str | None, dev: torch.device) -> FeatureExtractor:
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3

        model = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                   feature_extractor_weights_path=weights)
    except ModuleNotFoundError as exc:
        raise ExtractorUnavailableError(f"--features inception needs torch-fidelity ({exc}); install it with "
                                        "`pip install torch-fidelity`, or use --features xrv") from exc
    except (OSError, RuntimeError) as exc:  # weights download or load failed
        raise ExtractorUnavailableError(f"--features inception: cannot load the Inception weights ({exc}); on a "
                                        "machine without internet pass a local weights file with --weights") from exc
    fingerprint = model_fingerprint(model)
    model.to(dev)

    @torch.no_grad()
    def embed(batch: torch.Tensor) -> torch.Tensor:
        return model(batch)

    return FeatureExtractor(
        kind="inception", name="inception-v3", weights=str(weights or "pt_inception-2015-12-05"),
        fingerprint=fingerprint, preprocessing=f"uint8 grey from true bit depth, xrv centre crop, bilinear "
        f"antialiased resize to {INCEPTION_SIZE}, 3 channels", dim=2048, prepare=_inception_prepare, embed=embed,
        device=dev, trained_on=("imagenet",), input_size=INCEPTION_SIZE)


#: the chest X-ray datasets RAD-DINO (microsoft/rad-dino) was trained on (Pérez-García et al. 2025, its model card)
RADDINO_TRAINED_ON: tuple[str, ...] = ("mimic-cxr", "chexpert", "nih", "padchest", "brax")


def raddino_trained_on(weights: str) -> tuple[str, ...]:
    """RAD-DINO's training datasets for its hub id or a folder of it; ``unknown`` for another model."""
    folder = Path(weights)
    name = weights.lower()
    if not folder.exists() and name.rstrip("/").endswith("rad-dino"):
        return RADDINO_TRAINED_ON
    recorded = folder / "trained_on.json"  # a folder may say what its weights saw
    if recorded.is_file():
        return tuple(json.loads(recorded.read_text()))
    return RADDINO_TRAINED_ON if "rad-dino" in name or "rad_dino" in name else ("unknown",)


def _processor_size(processor: Any) -> int:
    """The side an image processor crops or resizes to (0 when it does not say)."""
    for attribute in ("crop_size", "size"):
        value = getattr(processor, attribute, None)
        if isinstance(value, dict):
            value = value.get("height") or value.get("shortest_edge")
        if isinstance(value, int):
            return value
    return 0


def _load_raddino(weights: str, dev: torch.device, chexgenbench: bool = False) -> FeatureExtractor:
    from transformers import AutoImageProcessor, AutoModel

    try:
        processor = AutoImageProcessor.from_pretrained(weights)
        model = AutoModel.from_pretrained(weights).eval()
    except OSError as exc:
        raise ExtractorUnavailableError(f"--features raddino: cannot load {weights!r} ({exc}); download "
                                        f"{DEFAULT_RADDINO} once with internet access or pass a local folder "
                                        "with --weights") from exc
    fingerprint = model_fingerprint(model)
    model.to(dev)

    @torch.no_grad()
    def embed(batch: torch.Tensor) -> torch.Tensor:
        return model(pixel_values=batch).pooler_output

    label = Path(weights).name if Path(weights).exists() else weights
    if chexgenbench:
        return FeatureExtractor(
            kind="raddino-chexgenbench", name=f"raddino-chexgenbench:{label}", weights=str(weights),
            fingerprint=fingerprint, preprocessing="CheXGenBench metrics/fid.py: PIL RGB (16-bit clipped), squashed to "
            f"{CHEXGENBENCH_SIZE}x{CHEXGENBENCH_SIZE} bilinear, uint8 by truncation, image processor "
            + processor.to_json_string(), dim=int(model.config.hidden_size),
            prepare=functools.partial(_chexgenbench_prepare, processor=processor), embed=embed, device=dev,
            trained_on=raddino_trained_on(weights), input_size=_processor_size(processor))
    return FeatureExtractor(
        kind="raddino", name=f"raddino:{label}",
        weights=str(weights), fingerprint=fingerprint,
        preprocessing="float [0,1] from true bit depth, grey to RGB, image processor " + processor.to_json_string(),
        dim=int(model.config.hidden_size), prepare=functools.partial(_raddino_prepare, processor=processor),
        embed=embed, device=dev, trained_on=raddino_trained_on(weights), input_size=_processor_size(processor))


# ----------------------------------------------------------------------------------------------------
# The cache
# ----------------------------------------------------------------------------------------------------


def default_cache_dir(results_dir: str | Path | None = None) -> Path:
    """``$SYNTHCXR_CACHE/features`` when set, else ``<results dir>/cache/features``."""
    return cache_dir("features", results_dir)


def file_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes; a missing or empty file raises :class:`ImageLoadError` naming it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError as exc:
        raise ImageLoadError(path, "file not found") from exc
    except OSError as exc:
        raise ImageLoadError(path, f"cannot read the file ({exc})") from exc
    if size == 0:
        raise ImageLoadError(path, "file is empty (0 bytes)")
    return digest.hexdigest()


def file_digests(paths: Sequence[str | Path], workers: int = 8) -> list[str]:
    """:func:`file_digest` of every path, in order (threads; hashing releases the GIL)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(file_digest, paths))


class FeatureCache:
    """Features of one extractor on disk: ``<root>/<extractor.cache_key>/part-*.npz`` shards of ``keys`` (file
    SHA-256) and ``features`` (float32 ``(n, dim)``), each written atomically; concurrent writers never clash."""

    def __init__(self, root: str | Path, extractor: FeatureExtractor):
        self.folder = Path(root) / extractor.cache_key
        self.dim = extractor.dim
        self._space = extractor.describe()

    def lookup(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached features ``(dim,)`` float32 of those ``keys`` that are in the cache."""
        wanted = set(keys)
        found: dict[str, np.ndarray] = {}
        if not self.folder.is_dir() or not wanted:
            return found
        for shard in sorted(self.folder.glob("part-*.npz")):
            try:
                with np.load(shard) as z:
                    shard_keys = z["keys"]
                    rows = [i for i, key in enumerate(shard_keys.tolist()) if key in wanted and key not in found]
                    if not rows:
                        continue
                    features = z["features"]
            except (OSError, ValueError, KeyError) as exc:
                print(f"warning: ignoring unreadable feature-cache shard {shard} ({exc})", file=sys.stderr)
                continue
            if features.ndim != 2 or features.shape[1] != self.dim:
                print(f"warning: ignoring feature-cache shard {shard} with shape {features.shape}", file=sys.stderr)
                continue
            for i in rows:
                found[str(shard_keys[i])] = features[i]
            if len(found) == len(wanted):
                break
        return found

    def store(self, keys: Sequence[str], features: np.ndarray) -> Path | None:
        """Write one shard (atomic rename); returns its path (None when ``keys`` is empty)."""
        if len(keys) == 0:
            return None
        features = np.asarray(features, dtype=np.float32)
        if features.shape != (len(keys), self.dim):
            raise ValueError(f"features of shape {features.shape} for {len(keys)} keys of dim {self.dim}")
        self.folder.mkdir(parents=True, exist_ok=True)
        space = self.folder / "space.json"
        if not space.exists():
            _atomic_bytes(space, (json.dumps(self._space, indent=2) + "\n").encode())
        name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(4)}.npz"
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".part-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, keys=np.asarray(list(keys), dtype="U64"), features=features)
            os.replace(tmp, self.folder / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.folder / name


def _atomic_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------------------------------


class _Prepared(Dataset):
    """Item ``i``: ``(prepared array, i, "")``, or ``(None, i, reason)`` when the file cannot be decoded."""

    def __init__(self, paths: Sequence[Path], prepare: Callable[[XrayImage], np.ndarray]):
        self.paths = list(paths)
        self.prepare = prepare

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[np.ndarray | None, int, str]:
        try:
            return self.prepare(load_image(self.paths[index])), index, ""
        except ImageLoadError as exc:
            return None, index, exc.reason


def _collate(items: list[tuple[np.ndarray | None, int, str]]) -> tuple[torch.Tensor | None, list[int], list[str]]:
    indices = [i for _, i, _ in items]
    errors = [e for _, _, e in items]
    if any(errors):
        return None, indices, errors
    return torch.from_numpy(np.stack([a for a, _, _ in items])), indices, errors


@dataclass
class FeatureResult:
    """Features ``(N, dim)`` float32 in the order of the paths given, their file hashes, and where they came
    from: ``n_cached`` read from the cache, ``n_computed`` run through the extractor (summed over processes)."""

    features: np.ndarray
    keys: list[str]
    n_cached: int
    n_computed: int


def _embed_missing(paths: list[Path], extractor: FeatureExtractor, batch_size: int, num_workers: int,
                   on_features: Callable[[list[int], np.ndarray], None], bar: Any) -> None:
    loader = DataLoader(_Prepared(paths, extractor.prepare), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=_collate)
    for batch, indices, errors in loader:
        if batch is None:
            bad = next(i for i, e in zip(indices, errors, strict=True) if e)
            raise ImageLoadError(paths[bad], errors[indices.index(bad)] + "; run ./scripts/check_data.sh to list "
                                 "every unreadable image at once")
        if extractor.check is not None:
            extractor.check(batch, f"batch starting at {paths[indices[0]]}")
        with torch.no_grad():
            out = extractor.embed(batch.to(extractor.device))
        on_features(indices, out.detach().float().cpu().numpy())
        bar.update(len(indices))


def extract_features(
    paths: Sequence[str | Path],
    extractor: FeatureExtractor,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool | str = False,
) -> FeatureResult:
    """Features of every image in ``paths``, float32 ``(N, extractor.dim)``, in order.

    Each image's features are looked up in the cache by file hash and computed only when missing (identical
    files once); new ones are written back every :data:`FLUSH_EVERY` images and when extraction stops, so an
    interrupted run keeps what it did. Under ``accelerate launch`` every process takes its share of the paths and
    the results are gathered, so every process returns the full pooled set. A missing, empty or undecodable
    image raises :class:`ImageLoadError` naming the file. ``progress`` (true, or the loop's name) shows the images
    still to compute on a :func:`benchmark.core.progress.progress` display (a bar, or one line in a log).
    """
    from accelerate.utils import gather_object

    from benchmark.core.progress import progress as progress_display

    paths = [Path(p) for p in paths]
    state = process_state()
    with state.split_between_processes(list(range(len(paths)))) as share:
        mine = list(share)
    keys_mine = file_digests([paths[i] for i in mine])
    cache = FeatureCache(cache_dir if cache_dir is not None else default_cache_dir(), extractor) if use_cache \
        else None
    found = cache.lookup(keys_mine) if cache is not None else {}
    todo_keys = list(dict.fromkeys(k for k in keys_mine if k not in found))
    first_path = {}
    for i, key in zip(mine, keys_mine, strict=True):
        first_path.setdefault(key, paths[i])
    computed: dict[str, np.ndarray] = {}
    pending_keys: list[str] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        if cache is not None and pending_keys:
            cache.store(pending_keys, np.stack(pending))
        pending_keys.clear()
        pending.clear()

    def on_features(indices: list[int], features: np.ndarray) -> None:
        for i, vector in zip(indices, features, strict=True):
            computed[todo_keys[i]] = vector
            pending_keys.append(todo_keys[i])
            pending.append(vector)
        if len(pending_keys) >= FLUSH_EVERY:
            flush()

    label = progress if isinstance(progress, str) and progress else f"features {extractor.name}"
    if state.num_processes > 1:
        label += f" (process {state.process_index})"
    label += f", {len(found)} from cache" if found else ""
    try:
        with progress_display(len(todo_keys), label, "img", enabled=bool(progress)) as bar:
            _embed_missing([first_path[k] for k in todo_keys], extractor, batch_size, num_workers, on_features,
                           bar)
    finally:
        flush()
    lookup = {**found, **computed}
    mine_features = np.stack([lookup[k] for k in keys_mine]) if mine else np.zeros((0, extractor.dim), np.float32)
    parts = gather_object([(mine, mine_features, keys_mine, len(found), len(computed))])
    features = np.zeros((len(paths), extractor.dim), dtype=np.float32)
    keys = [""] * len(paths)
    n_cached = n_computed = 0
    for indices, part, part_keys, part_cached, part_computed in parts:
        if len(indices):
            features[np.asarray(indices)] = part
        for i, key in zip(indices, part_keys, strict=True):
            keys[i] = key
        n_cached += part_cached
        n_computed += part_computed
    return FeatureResult(features, keys, n_cached, n_computed)
