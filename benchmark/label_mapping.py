"""Mapping a split's classes to a classifier's outputs, by name.

The default table maps class names (PadChest, CheXpert, NIH spellings; case-insensitive) to torchxrayvision output
names: ``soft tissue mass`` and ``pulmonary mass`` -> ``Mass``, ``cardiomegaly`` -> ``Cardiomegaly``,
``pleural effusion`` -> ``Effusion``, ... (an output named exactly like the class wins).
``normal`` / ``No Finding`` use the *normal rule*: the image is normal when
no output is above its threshold, so its score is ``1 - max(outputs)``. A user mapping (``class=Output``,
``class=normal-rule``) overrides the table. A class whose output the classifier does not have is *not evaluable*:
reported as such, never scored as 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

NORMAL_RULE = "normal-rule"
DEFAULT_LABEL_MAP: dict[str, str] = {
    "soft tissue mass": "Mass", "pulmonary mass": "Mass", "mass": "Mass", "nodule": "Nodule",
    "cardiomegaly": "Cardiomegaly", "pleural effusion": "Effusion", "effusion": "Effusion",
    "atelectasis": "Atelectasis", "consolidation": "Consolidation", "pneumothorax": "Pneumothorax",
    "edema": "Edema", "emphysema": "Emphysema", "fibrosis": "Fibrosis", "pneumonia": "Pneumonia",
    "pleural thickening": "Pleural_Thickening", "pleural_thickening": "Pleural_Thickening", "hernia": "Hernia",
    "infiltration": "Infiltration", "lung lesion": "Lung Lesion", "fracture": "Fracture",
    "lung opacity": "Lung Opacity", "enlarged cardiomediastinum": "Enlarged Cardiomediastinum",
    "normal": NORMAL_RULE, "no finding": NORMAL_RULE,
}


@dataclass(frozen=True)
class ClassMapping:
    """How one class is scored: an output index, the normal rule, or not evaluable (with the reason)."""

    name: str
    output: str | None
    index: int | None
    normal_rule: bool
    reason: str = ""

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


def map_classes(classes: Sequence[str], outputs: Sequence[str],
                overrides: Mapping[str, str] | None = None) -> list[ClassMapping]:
    """One :class:`ClassMapping` per class, using ``overrides`` first, then an output of exactly the class's name
    (case-insensitive), then :data:`DEFAULT_LABEL_MAP`. ``outputs`` are the classifier's output names ('' unused)."""
    lowered = {k.lower(): v for k, v in (overrides or {}).items()}
    by_name = {o.lower(): i for i, o in enumerate(outputs) if o}
    mappings = []
    for name in classes:
        key = name.lower()
        target = lowered.get(key) or (name if key in by_name else None) or DEFAULT_LABEL_MAP.get(key)
        if target is None:
            mappings.append(ClassMapping(name, None, None, False, "no output of this name and no mapping for it"))
        elif target == NORMAL_RULE:
            mappings.append(ClassMapping(name, NORMAL_RULE, None, True))
        elif target.lower() in by_name:
            mappings.append(ClassMapping(name, outputs[by_name[target.lower()]], by_name[target.lower()], False))
        else:
            mappings.append(ClassMapping(name, target, None, False,
                                         f"the classifier has no output {target!r}"))
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
