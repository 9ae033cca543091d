"""What the generator was trained on, and whether the evaluation split's held-out patients were among it.

A generator that saw the real test patients makes every "real test" comparison a comparison with its own training
data: utility is inflated, and memorisation / re-identification searched only the harness's train split never find
copies of those images. A synthetic set's ``manifest.json`` therefore carries a ``generator_training`` record, written
by ``generate.sh`` / ``register_images.sh`` (``--generator-training CSV[:split[+split]]`` or
``--generator-training-ids FILE``) or by hand:

* ``{"split_csv": "splits/pc.csv", "splits": ["train"]}``: the rows of those splits of that CSV (patients and images);
* ``{"patients": [...], "images": [...]}`` (either list may be empty): patient ids and image ids / paths;
* ``"unknown"`` (or no record): nobody said; rows then say ``generator_training: unknown``;
* ``"none"``: the generator was not trained on real images (the demo's phantom generators, an untrained model).

:func:`check_generator_overlap` is called by every stage: it stops (:class:`GeneratorOverlapError`, naming the
patients) when the record overlaps the evaluation split's val or test patients (ids compared stripped, case-sensitive)
or images (compared by resolved path and by file name), unless overlap is explicitly allowed, which every row
then records. :func:`training_references` gives memorisation and privacy the images to search.
:func:`synthetic_origins` / :func:`check_synthetic_origins` keep the retrained stage from training on synthetic
images made from val / test rows.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.data import DataError, SplitTable, read_split_csv, resolve_image_path

UNKNOWN = "unknown"
HELD_OUT = ("val", "test")


class GeneratorOverlapError(DataError):
    """The generator was trained on patients or images the evaluation holds out, and overlap was not allowed."""


@dataclass(frozen=True)
class GeneratorTraining:
    """A resolved ``generator_training`` record: patient ids, image paths / names, and a description."""

    known: bool
    description: str
    patients: frozenset[str] = field(default_factory=frozenset)
    images: frozenset[str] = field(default_factory=frozenset)
    image_paths: tuple[Path, ...] = ()
    image_patients: tuple[str, ...] = ()


def _strip_all(values: Iterable[Any]) -> frozenset[str]:
    return frozenset(str(v).strip() for v in values if str(v).strip())


def record_from_arguments(split_spec: str | None, ids_file: str | None) -> dict[str, Any] | str:
    """The manifest record for ``--generator-training CSV[:split[+split]]`` or ``--generator-training-ids FILE`` (one
    patient id per line; lines ``image:<id or path>`` name images); ``"unknown"`` when neither is given.

    The CSV is read (and validated) here, so a wrong path stops before any image is made.
    """
    if split_spec and ids_file:
        raise DataError("give --generator-training or --generator-training-ids, not both")
    if split_spec in ("none", "unknown"):
        return split_spec
    if split_spec:
        csv, _, splits = split_spec.partition(":")
        wanted = [s for s in splits.split("+") if s] or ["train"]
        table = read_split_csv(csv)
        bad = [s for s in wanted if s not in ("train", "val", "test")]
        if bad:
            raise DataError(f"--generator-training {split_spec}: unknown split {bad[0]!r}; use train, val or test")
        return {"split_csv": str(Path(csv).resolve()), "splits": wanted, "dataset": table.dataset,
                "n_images": int(table.frame["split"].isin(wanted).sum())}
    if ids_file:
        path = Path(ids_file)
        try:
            lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise DataError(f"--generator-training-ids {path}: cannot read ({exc})") from exc
        images = [line[len("image:"):].strip() for line in lines if line.startswith("image:")]
        patients = [line for line in lines if not line.startswith("image:")]
        return {"patients": patients, "images": images, "ids_file": str(path.resolve())}
    return UNKNOWN


def add_generator_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that write a ``generator_training`` record (generate.sh, register_images.sh)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--generator-training", metavar="CSV[:SPLIT[+SPLIT]]",
                       help="the split CSV rows the generator was trained on (default split: train); every stage "
                            "refuses an evaluation whose val/test patients are among them; 'none' for a generator "
                            "not trained on real images")
    group.add_argument("--generator-training-ids", metavar="FILE",
                       help="file of the patient ids the generator was trained on (one per line; 'image:<id>' lines "
                            "name images). Neither flag: the manifest says 'unknown'")


def resolve(record: Any, *, where: str = "manifest.json") -> GeneratorTraining:
    """A :class:`GeneratorTraining` from a manifest's ``generator_training`` value (None / "unknown": unknown).

    Errors (a split CSV that cannot be read, a record of another shape) name ``where``.
    """
    if record is None or record == UNKNOWN or record == {}:
        return GeneratorTraining(False, UNKNOWN)
    if record == "none":
        return GeneratorTraining(True, "none: not trained on real images")
    if not isinstance(record, dict):
        raise DataError(f"{where}: generator_training must be 'unknown', {{'split_csv': ..., 'splits': [...]}} or "
                        f"{{'patients': [...], 'images': [...]}}, got {record!r}")
    if "split_csv" in record:
        splits = list(record.get("splits") or ["train"])
        try:
            table = read_split_csv(record["split_csv"])
        except DataError as exc:
            raise DataError(f"{where}: generator_training.split_csv: {exc}") from exc
        rows = table.subset(splits)
        paths = tuple(rows.image_paths())
        patients = tuple(str(p).strip() for p in rows.frame["patient_id"])
        return GeneratorTraining(True, f"{Path(record['split_csv']).name} {'+'.join(splits)} "
                                       f"({len(set(patients))} patients, {len(paths)} images)",
                                 frozenset(patients), frozenset(p.name for p in paths), paths, patients)
    patients, images = _strip_all(record.get("patients") or []), _strip_all(record.get("images") or [])
    if not patients and not images:
        raise DataError(f"{where}: generator_training lists no patients and no images")
    names = frozenset(Path(i).name for i in images) | images
    return GeneratorTraining(True, f"{len(patients)} patient ids, {len(images)} image ids", patients, names)


@dataclass(frozen=True)
class OverlapDecision:
    """Columns every stage writes: what the generator was trained on, and its overlap with the held-out data."""

    generator_training: str
    generator_overlap: str

    def columns(self) -> dict[str, str]:
        return {"generator_training": self.generator_training, "generator_overlap": self.generator_overlap}


def _held_out(real: SplitTable, splits: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Held-out patients -> their split, and image keys (resolved path and file name) -> their split."""
    rows = real.subset(list(splits))
    patients = {str(p).strip(): s for p, s in zip(rows.frame["patient_id"], rows.frame["split"], strict=True)}
    images: dict[str, str] = {}
    for raw, split in zip(rows.frame["image_path"], rows.frame["split"], strict=True):
        path = resolve_image_path(raw, real.image_root)
        images[str(path.resolve())] = split
        images[path.name] = split
    return patients, images


def check_generator_overlap(training: GeneratorTraining, real: SplitTable, *, allow: bool = False,
                            held_out: Sequence[str] = HELD_OUT) -> OverlapDecision:
    """Stop when the generator's training data overlap the split's held-out (val / test) patients or images.

    Returns the row columns: ``generator_training`` (the record's description, or ``unknown``) and
    ``generator_overlap`` (``none``, ``not checked: generator training data unknown``, or ``allowed: ...``).
    Raises :class:`GeneratorOverlapError` naming the overlapping patients (first five) and the flag to override.
    """
    if not training.known:
        return OverlapDecision(UNKNOWN, "not checked: generator training data unknown")
    patients, images = _held_out(real, held_out)
    shared_patients = sorted(training.patients & patients.keys())
    training_images = set(training.images) | {str(p.resolve()) for p in training.image_paths}
    shared_images = sorted(training_images & images.keys())
    if not shared_patients and not shared_images:
        return OverlapDecision(training.description, "none")
    splits = sorted({patients[p] for p in shared_patients} | {images[i] for i in shared_images})
    what = (f"{len(shared_patients)} {'/'.join(splits)} patient(s) of {real.source} "
            f"({', '.join(shared_patients[:5])}{', ...' if len(shared_patients) > 5 else ''})"
            if shared_patients else f"{len(shared_images)} {'/'.join(splits)} image(s) of {real.source}")
    reason = f"the generator was trained on {what}"
    if not allow:
        raise GeneratorOverlapError(
            f"leakage: {reason}. Its synthetic images would be compared with (and a classifier tested on) images it "
            "learned from. Evaluate on a split whose val/test patients the generator never saw, or pass "
            "--allow-generator-overlap to run anyway (recorded in every row).")
    return OverlapDecision(training.description, f"allowed: {reason}")


def training_references(training: GeneratorTraining, real: SplitTable) -> tuple[list[Path], list[str]] | None:
    """Images (and their patients) memorisation and privacy should search: the generator's own training images when
    the record names them as split rows; None when it does not (then the split's train rows are searched)."""
    if not training.image_paths:
        return None
    return list(training.image_paths), list(training.image_patients)


#: ``--synthetic-from`` of the retrained stage: which synthetic images may be trained on
SYNTHETIC_FROM = ("train", "train-subset", "any")


def synthetic_origins(real: SplitTable, synthetic: Any) -> np.ndarray:
    """(M,) the split each synthetic image was made from: ``train``, ``val``, ``test`` or ``unknown``.

    From the image's own ``split`` column (generation carries it from a split CSV), else its ``source_row`` (a row of
    this split CSV, unless the manifest's ``prompts_csv`` names another file), else its ``patient_id``'s split; else
    unknown (a registered folder).
    """
    frame = synthetic.frame
    n = len(frame)
    out = np.full(n, "unknown", dtype=object)
    if "patient_id" in frame.columns:
        by_patient = dict(zip(real.frame["patient_id"].str.strip(), real.frame["split"], strict=True))
        out = np.array([by_patient.get(str(p).strip(), "unknown") for p in frame["patient_id"]], dtype=object)
    prompts = str(getattr(synthetic, "manifest", {}).get("prompts_csv") or "")
    same_csv = not prompts or Path(prompts).resolve() == Path(real.source).resolve()
    if "source_row" in frame.columns and same_csv:  # source_row numbers the split CSV's rows (as `mixed` reads it)
        rows = pd.to_numeric(frame["source_row"], errors="coerce").to_numpy(dtype=float)
        valid = np.isfinite(rows) & (rows >= 0) & (rows < len(real.frame))
        out[valid] = real.frame["split"].to_numpy()[rows[valid].astype(np.int64)]
    if "split" in frame.columns:
        own = frame["split"].fillna("").astype(str).str.strip().to_numpy()
        known = np.isin(own, ("train", "val", "test"))
        out[known] = own[known]
    return out


def check_synthetic_origins(origins: np.ndarray, mode: str, where: str) -> tuple[np.ndarray, str]:
    """Which synthetic images a retrained unit may use (a boolean mask), and the rows' ``synthetic_from`` text.

    ``train`` (default): an image made from a val or test row stops the run (a classifier trained on a "synthetic
    twin" of a test image is tested on that image); ``train-subset``: those images are left out (counted);
    ``any``: they are used, and every row says so. Images of unknown origin are used and counted.
    """
    if mode not in SYNTHETIC_FROM:
        raise DataError(f"--synthetic-from {mode!r}: use one of {', '.join(SYNTHETIC_FROM)}")
    held_out = np.isin(origins, HELD_OUT)
    counts = ", ".join(f"{k} {int((origins == k).sum())}" for k in ("train", "val", "test", "unknown")
                       if (origins == k).any())
    if held_out.any() and mode == "train":
        first = int(np.flatnonzero(held_out)[0])
        raise DataError(
            f"{where}: {int(held_out.sum())} synthetic image(s) were made from val/test rows (e.g. row {first + 1}: "
            f"{origins[first]}); a classifier trained on them is tested on their real twins, which biases the "
            "synthetic settings upward. Generate the training set from the train split (generate.sh --split "
            "train), pass --synthetic-from train-subset to leave those images out, or --synthetic-from any to use "
            "them anyway (recorded in every row)")
    if mode == "train-subset":
        return ~held_out, f"train-subset: {int(held_out.sum())} image(s) made from val/test rows left out ({counts})"
    if mode == "any" and held_out.any():
        return np.ones(origins.size, bool), (f"any (override): {int(held_out.sum())} image(s) made from val/test "
                                             f"rows used, biased upward ({counts})")
    return np.ones(origins.size, bool), f"{mode} ({counts})"
