"""The leakage guard: which datasets each classifier was trained on, and whether a split may be scored by it.

A pretrained classifier that saw the images the generator was trained on (or the real test images) makes utility
numbers meaningless. Each torchxrayvision DenseNet weights key is listed with the datasets whose *images* it was
trained on (Google's and RSNA's labels are on NIH images, so they count as NIH); a harness checkpoint records its
own ``trained_on``. A split whose dataset is among them stops the run unless leakage is explicitly allowed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

XRV_TRAINED_ON: dict[str, tuple[str, ...]] = {
    "densenet121-res224-all": ("nih", "padchest", "chexpert", "mimic-cxr", "google", "openi", "rsna"),
    "densenet121-res224-nih": ("nih",),
    "densenet121-res224-pc": ("padchest",),
    "densenet121-res224-chex": ("chexpert",),
    "densenet121-res224-mimic_nb": ("mimic-cxr",),
    "densenet121-res224-mimic_ch": ("mimic-cxr",),
    "densenet121-res224-rsna": ("rsna", "nih"),
}
# Datasets whose images are another dataset's images.
SAME_IMAGES: dict[str, str] = {"google": "nih", "rsna": "nih"}
#: canonical dataset names the guard can verify, with the spellings users write for each (compared after
#: :func:`_key`: lower case letters and digits only, so case, spaces, hyphens and underscores do not matter)
DATASET_SPELLINGS: dict[str, tuple[str, ...]] = {
    "nih": ("nih", "nih-cxr14", "nih-cxr", "nihcxr14", "nih-chest-x-ray", "nih-chest-xray", "nih-chestxray14",
            "nih-chest-x-ray14", "nih-chest-x-rays", "chestx-ray14", "chestxray14", "chest-x-ray14", "chestx-ray8",
            "chestxray8", "nih-clinical-center", "nihcc", "national-institutes-of-health"),
    "padchest": ("padchest", "pc", "pad-chest", "bimcv-padchest", "padchest-bimcv", "hospital-san-juan",
                 "san-juan-hospital", "hospital-universitario-san-juan"),
    "chexpert": ("chexpert", "chex", "chexpert-v1.0", "chexpert-v1", "chexpert-plus", "stanford-chexpert",
                 "stanford"),
    "mimic-cxr": ("mimic-cxr", "mimic", "mimiccxr", "mimic-cxr-jpg", "mimic-cxr-jpg-2.0.0", "mimic-iv-cxr",
                  "bidmc", "beth-israel", "beth-israel-deaconess"),
    "openi": ("openi", "open-i", "iu-xray", "iu-x-ray", "indiana", "indiana-university"),
    "google": ("google", "google-nih"),
    "rsna": ("rsna", "rsna-pneumonia", "kaggle", "kaggle-rsna"),
    "vindr-cxr": ("vindr-cxr", "vindr", "vindrcxr"),
    "brax": ("brax",),
    "covid-ieee8023": ("covid-ieee8023", "ieee8023", "covid-chestxray-dataset", "cohen-covid"),
    "covid-hannover": ("covid-hannover", "hannover"),
    "kermany": ("kermany", "kermany-val", "pediatric-pneumonia", "guangzhou-pediatric"),
    "demo": ("demo",),
}
ALIASES: dict[str, str] = {}
UNKNOWN_DATASETS = ("", "unknown", "custom")


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


for _canonical, _spellings in DATASET_SPELLINGS.items():
    for _spelling in _spellings:
        ALIASES[_key(_spelling)] = _canonical


def normalise_dataset(name: str) -> str:
    """Canonical dataset name (``MIMIC_CXR`` -> ``mimic-cxr``, ``NIH Chest X-ray14`` -> ``nih``); an unrecognised
    name comes back lower-cased (see :func:`is_known_dataset`)."""
    return ALIASES.get(_key(name), name.strip().lower())


def is_known_dataset(name: str) -> bool:
    """Whether the guard recognises ``name`` (one of :data:`DATASET_SPELLINGS`' spellings)."""
    return _key(name) in ALIASES


def known_dataset_names() -> str:
    """The canonical names, for messages."""
    return ", ".join(DATASET_SPELLINGS)


def check_dataset_name(name: str, what: str) -> str:
    """``name`` normalised, or a :class:`benchmark.data.DataError`-style ``ValueError`` naming ``what`` and the known
    names (for the split builders' ``--dataset``). Several datasets may be joined with ``+``."""
    parts = [p for p in name.split("+") if p.strip()]
    unknown = [p for p in parts if not is_known_dataset(p)]
    if not parts or unknown:
        raise ValueError(f"{what} {name!r}: {'unknown dataset ' + repr(unknown[0]) if unknown else 'empty'}; the "
                         f"leakage guard knows {known_dataset_names()} (and their usual spellings). Name the dataset "
                         "the images come from; a dataset of your own that no public model was trained on can be "
                         "given as is with --allow-unknown-dataset")
    return "+".join(normalise_dataset(p) for p in parts)


def image_sources(datasets: Sequence[str]) -> set[str]:
    """The datasets whose images these are (each dataset, plus the one it draws its images from)."""
    names = {normalise_dataset(d) for d in datasets}
    return names | {SAME_IMAGES[n] for n in names if n in SAME_IMAGES}


@dataclass(frozen=True)
class LeakageDecision:
    """Outcome of the guard: ``leaky`` (overlap or unverifiable), whether allowed, and the reason in words."""

    leaky: bool
    allowed: bool
    reason: str

    @property
    def status(self) -> str:
        """What goes into every result row: ``none``, or ``allowed: <reason>``."""
        return "none" if not self.leaky else f"allowed: {self.reason}"


class LeakageError(RuntimeError):
    """The classifier was trained on the dataset being evaluated, and leakage was not allowed."""


def check_leakage(split_dataset: str, classifier_name: str, trained_on: Sequence[str],
                  allow_leakage: bool = False) -> LeakageDecision:
    """Decide whether ``classifier_name`` (trained on ``trained_on``) may score images of ``split_dataset``.

    Stops with :class:`LeakageError` (the message says why and how to override) when the split's images come from
    a dataset the classifier was trained on, or when the split does not say where its images come from, unless
    ``allow_leakage``; the returned decision is then recorded in every result row.
    """
    parts = [p for p in split_dataset.split("+") if normalise_dataset(p) not in UNKNOWN_DATASETS]
    unrecognised = [p for p in parts if not is_known_dataset(p)]
    split_sources = image_sources(parts)
    if not split_sources:
        reason = (f"the split does not record its source dataset ({split_dataset!r}), so overlap with "
                  f"{classifier_name}'s training data ({', '.join(trained_on) or 'unknown'}) cannot be ruled out")
        leaky = True
    elif unrecognised:
        reason = (f"the split's dataset {unrecognised[0]!r} is not one the guard knows ({known_dataset_names()}, "
                  f"and their usual spellings), so overlap with {classifier_name}'s training data "
                  f"({', '.join(trained_on) or 'unknown'}) cannot be verified; write the dataset's name in the "
                  "split's dataset column or sidecar")
        leaky = True
    else:
        overlap = sorted(split_sources & image_sources(trained_on))
        leaky = bool(overlap)
        reason = (f"{classifier_name} was trained on {', '.join(trained_on)}, which includes the split's dataset "
                  f"({', '.join(overlap)})" if leaky else
                  f"{classifier_name} was trained on {', '.join(trained_on) or 'nothing recorded'}; split from "
                  f"{', '.join(sorted(split_sources))}")
    if leaky and not allow_leakage:
        raise LeakageError(
            f"leakage: {reason}. Its scores on these images (and on synthetic images of a generator trained on "
            "them) would not measure what the generator learned. Use weights trained on other data (e.g. "
            "'densenet121-res224-nih' for PadChest or MIMIC-CXR splits), a checkpoint trained on a disjoint "
            "population, or pass --allow-leakage to run anyway (recorded in every result row)."
        )
    return LeakageDecision(leaky, allow_leakage and leaky, reason)


def extractor_note(split_dataset: str, extractor_name: str, trained_on: Sequence[str]) -> str:
    """A warning for image-quality rows when the feature extractor was trained on the split's own dataset, or ""
    (fidelity metrics are not refused for this: see the README's "Leakage: what is checked").

    An extractor trained on the real images maps them (and near-copies of them) into a tighter, better-separated
    region of its space than unseen images of the same kind: FID / precision / recall are still comparable between
    models scored in that one space, but memorisation distances to those training images are smaller than for unseen
    images, so a feature-space copy threshold calibrated on them is strict.
    """
    sources = image_sources(split_dataset.split("+")) - set(UNKNOWN_DATASETS)
    seen = sorted(sources & image_sources(trained_on))
    if not trained_on or "unknown" in {normalise_dataset(t) for t in trained_on}:
        return f"feature extractor {extractor_name}: training data unknown"
    if not seen:
        return ""
    return (f"feature extractor {extractor_name} was trained on {', '.join(seen)}, the split's own dataset: its "
            "features of these real images are in-distribution, so fidelity figures compare models fairly in this "
            "space but feature-space memorisation distances are smaller than for unseen images")
