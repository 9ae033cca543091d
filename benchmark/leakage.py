"""The leakage guard: which datasets each classifier was trained on, and whether a split may be scored by it.

A pretrained classifier that saw the images the generator was trained on (or the real test images) makes utility
numbers meaningless. Each torchxrayvision DenseNet weights key is listed with the datasets whose *images* it was
trained on (Google's and RSNA's labels are on NIH images, so they count as NIH); a harness checkpoint records its
own ``trained_on``. A split whose dataset is among them stops the run unless leakage is explicitly allowed.
"""

from __future__ import annotations

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
ALIASES: dict[str, str] = {
    "nih": "nih", "nih_cxr14": "nih", "nih-cxr14": "nih", "chestx-ray14": "nih", "chestxray14": "nih",
    "chestx-ray8": "nih", "padchest": "padchest", "pc": "padchest", "chexpert": "chexpert", "chex": "chexpert",
    "mimic": "mimic-cxr", "mimic-cxr": "mimic-cxr", "mimic_cxr": "mimic-cxr", "mimic-cxr-jpg": "mimic-cxr",
    "openi": "openi", "open-i": "openi", "google": "google", "rsna": "rsna", "kaggle": "rsna",
}
UNKNOWN_DATASETS = ("", "unknown", "custom")


def normalise_dataset(name: str) -> str:
    """Canonical dataset name (``MIMIC_CXR`` -> ``mimic-cxr``, ``NIH_CXR14`` -> ``nih``); others lower-cased."""
    key = name.strip().lower()
    return ALIASES.get(key, key)


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
    split_sources = image_sources(split_dataset.split("+")) - set(UNKNOWN_DATASETS)
    if not split_sources:
        reason = (f"the split does not record its source dataset ({split_dataset!r}), so overlap with "
                  f"{classifier_name}'s training data ({', '.join(trained_on) or 'unknown'}) cannot be ruled out")
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
