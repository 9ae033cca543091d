"""Mapping a split's classes to a classifier's outputs, by name, and marking every mapping that scores a different
finding (a *proxy*).

The default table maps class names (PadChest, CheXpert, NIH spellings; case-insensitive) to torchxrayvision output
names of the *same* finding: ``pulmonary mass`` -> ``Mass``, ``cardiomegaly`` -> ``Cardiomegaly``, ``pleural
effusion`` -> ``Effusion``, ... (an output named exactly like the class wins). ``normal`` / ``No Finding`` use the
*normal rule*: the image is normal when no output is above its threshold, so its score is ``1 - max(outputs)``.

A class whose finding the classifier has no output for is *not evaluable*, never scored as 0.5 and never scored by a
neighbouring output silently. Where a neighbour exists (:data:`PROXY_HINTS`: PadChest's ``soft tissue mass``, an
extrapulmonary mass, has only NIH's pulmonary ``Mass`` nearby) the reason names it and the flag to opt in:
``--label-map "soft tissue mass=Mass"``. Any user mapping to an output of another finding is a proxy; rows carry
``proxy`` and the proxy's description, so nobody reads "Mass" AUROCs as soft-tissue-mass AUROCs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

NORMAL_RULE = "normal-rule"
# class -> output of the same finding (scored without a flag)
DEFAULT_LABEL_MAP: dict[str, str] = {
    "pulmonary mass": "Mass", "mass": "Mass", "nodule": "Nodule",
    "cardiomegaly": "Cardiomegaly", "pleural effusion": "Effusion", "effusion": "Effusion",
    "atelectasis": "Atelectasis", "consolidation": "Consolidation", "pneumothorax": "Pneumothorax",
    "edema": "Edema", "emphysema": "Emphysema", "fibrosis": "Fibrosis", "pneumonia": "Pneumonia",
    "pleural thickening": "Pleural_Thickening", "pleural_thickening": "Pleural_Thickening", "hernia": "Hernia",
    "infiltration": "Infiltration", "lung lesion": "Lung Lesion", "fracture": "Fracture",
    "lung opacity": "Lung Opacity", "enlarged cardiomediastinum": "Enlarged Cardiomediastinum",
    "normal": NORMAL_RULE, "no finding": NORMAL_RULE,
}
# class -> (nearest output of a *different* finding, what differs): named in the not-evaluable reason, used only when
# the user maps it with --label-map, and then marked as a proxy in every row
PROXY_HINTS: dict[str, tuple[str, str]] = {
    "soft tissue mass": ("Mass", "NIH's 'Mass' is a pulmonary mass; PadChest's soft tissue mass is extrapulmonary"),
    "breast mass": ("Mass", "NIH's 'Mass' is a pulmonary mass"),
    "pleural mass": ("Mass", "NIH's 'Mass' is a pulmonary mass"),
    "lung lesion": ("Mass", "NIH's 'Mass' is one kind of lung lesion (nodules are another)"),
    "mediastinal mass": ("Enlarged Cardiomediastinum", "an enlarged mediastinum has other causes than a mass"),
}


@dataclass(frozen=True)
class ClassMapping:
    """How one class is scored: an output index, the normal rule, or not evaluable (with the reason)."""

    name: str
    output: str | None
    index: int | None
    normal_rule: bool
    reason: str = ""
    proxy: str = ""  # empty: the output is the class's own finding; else what differs (the mapping is a proxy)

    @property
    def evaluable(self) -> bool:
        """True when the classifier can score this class."""
        return self.normal_rule or self.index is not None


def parse_label_map(spec: str | Sequence[str] | None) -> dict[str, str]:
    """``"soft tissue mass=Nodule,normal=normal-rule"`` -> ``{"soft tissue mass": "Nodule", ...}``."""
    if not spec:
        return {}
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    mapping = {}
    for item in items:
        name, sep, output = item.partition("=")
        if not sep or not name.strip() or not output.strip():
            raise ValueError(f"--label-map item {item!r}: expected 'class=Output' or 'class={NORMAL_RULE}'")
        mapping[name.strip().lower()] = output.strip()
    return mapping


def _same_finding(name: str, output: str) -> bool:
    """Whether ``output`` names the class's own finding (exact name, or the default table's mapping)."""
    key = name.lower()
    return output.lower() == key or DEFAULT_LABEL_MAP.get(key, "").lower() == output.lower()


def map_classes(classes: Sequence[str], outputs: Sequence[str],
                overrides: Mapping[str, str] | None = None) -> list[ClassMapping]:
    """One :class:`ClassMapping` per class, using ``overrides`` first, then an output of exactly the class's name
    (case-insensitive), then :data:`DEFAULT_LABEL_MAP`. ``outputs`` are the classifier's output names ('' unused).

    An override to an output of another finding is marked as a proxy (``proxy`` says what differs); a class without
    its own output is not evaluable, and the reason names the nearest output (:data:`PROXY_HINTS`) and the flag that
    opts in to it.
    """
    lowered = {k.lower(): v for k, v in (overrides or {}).items()}
    by_name = {o.lower(): i for i, o in enumerate(outputs) if o}
    mappings = []
    for name in classes:
        key = name.lower()
        override = lowered.get(key)
        target = override or (name if key in by_name else None) or DEFAULT_LABEL_MAP.get(key)
        proxy = ""
        if override and override != NORMAL_RULE and not _same_finding(name, override):
            proxy = PROXY_HINTS[key][1] if key in PROXY_HINTS and PROXY_HINTS[key][0].lower() == override.lower() \
                else f"{override!r} is another finding than {name!r} (user mapping)"
        if target is None:
            reason = "no output of this name and no mapping for it"
            if key in PROXY_HINTS:
                near, differs = PROXY_HINTS[key]
                reason = (f"the classifier has no output for {name!r}; the nearest, {near!r}, is another finding "
                          f"({differs}). Opt in with --label-map \"{name}={near}\" (rows then say proxy), or use "
                          "the retrained stage" if near.lower() in by_name else
                          f"the classifier has no output for {name!r} (nor {near!r}, the nearest other finding); use "
                          "the retrained stage")
            mappings.append(ClassMapping(name, None, None, False, reason))
        elif target == NORMAL_RULE:
            mappings.append(ClassMapping(name, NORMAL_RULE, None, True))
        elif target.lower() in by_name:
            mappings.append(ClassMapping(name, outputs[by_name[target.lower()]], by_name[target.lower()], False,
                                         proxy=proxy))
        else:
            mappings.append(ClassMapping(name, target, None, False,
                                         f"the classifier has no output {target!r}", proxy=proxy))
    return mappings


def class_scores(probabilities: np.ndarray, mapping: ClassMapping, outputs: Sequence[str]) -> np.ndarray:
    """Score per image for one class from ``probabilities`` ``(N, n_outputs)`` (NaN where an output is unused).

    The normal rule gives ``1 - max`` over the used outputs; its threshold is then ``1 - t`` for an output threshold
    ``t``. Raises ``ValueError`` for a class that is not evaluable.
    """
    if mapping.normal_rule:
        used = [i for i, o in enumerate(outputs) if o]
        return 1.0 - np.nanmax(probabilities[:, used], axis=1)
    if mapping.index is None:
        raise ValueError(f"class {mapping.name!r} is not evaluable: {mapping.reason}")
    return probabilities[:, mapping.index]
