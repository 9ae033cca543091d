"""Built-in demo data: procedural chest-X-ray phantoms with four findings.

This module owns the phantom generator behind the demo data set (`make_splits.sh demo`): per-patient anatomy
(thorax and body outline, lungs, heart, mediastinum, spine, ribs, clavicles, diaphragm domes, lung vessels),
the findings `normal`, `cardiomegaly`, `soft tissue mass` and `pleural effusion`, and the writer of the demo
split (PNGs plus a SPEC §1 split CSV and its JSON sidecar).

Geometry is defined in normalised body coordinates (u to the image right, v downwards, both in [-1, 1]), so an
image renders alike at any size. Everything is vectorised numpy (float32); a 64 px image takes 2-3 ms.
Randomness is drawn from `np.random.default_rng([seed, patient, ...])`, so every image depends only on the
seed, its patient number and its image number, never on generation order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.ndimage import gaussian_filter

FINDINGS: tuple[str, ...] = ("normal", "cardiomegaly", "soft tissue mass", "pleural effusion")

PROMPT_TEMPLATE = "PA chest x-ray showing {finding}"
NORMAL_PROMPT_TEXT = "no acute findings"

_ANATOMY_STREAM = 0  # rng stream tags: anatomy of a patient, and each of its images
_IMAGE_STREAM = 1
_EDGE = 0.012  # softness of organ edges, in normalised units
_F = np.float32  # rendering runs in float32 (three times faster than float64 here)


@dataclass(frozen=True)
class PatientAnatomy:
    """Per-patient anatomy and acquisition parameters, in normalised body coordinates.

    u runs left to right across the image and v top to bottom, both in [-1, 1]; the patient's right is the
    image left (PA view). Every image of a patient is rendered from the same PatientAnatomy; only pose,
    exposure, noise and the finding change between images.
    """

    sex: str
    age: int
    body_hw: float  # half-width of the body outline
    neck_hw: float
    shoulder_v: float  # level where the shoulders start to slope
    thorax_hw: float  # half-width of the rib cage (inner), mean of both sides
    thorax_asym: float  # relative width difference, image right minus image left
    apex_v: float  # lung apex level
    widest_v: float  # level where the lungs are widest
    dome_v_left: float  # top of the diaphragm dome on the image left (patient right; usually higher)
    dome_v_right: float
    dome_depth: float  # drop from the dome top to the costophrenic angle
    med_shift: float  # mediastinal shift
    med_hw: float  # upper mediastinum half-width
    ctr: float  # cardiothoracic ratio of the normal heart
    heart_hb: float  # heart half-height
    heart_tilt: float  # radians
    spine_hw: float
    rib_v0: float  # level of the first posterior rib at the spine
    rib_spacing: float
    rib_thickness: float
    rib_curve: float
    rib_amp: float
    lung_air: float  # how much the aerated lung darkens the soft tissue
    soft_amp: float
    breast_amp: float
    bubble_u: float  # gastric air bubble under the patient's left dome
    bubble_amp: float
    vessels: tuple[tuple[float, float, float, float, float, float], ...]  # x0, y0, x1, y1, width, amplitude
    noise: float  # pixel noise standard deviation (intensity units, 0..1)
    blur: float  # blur sigma in normalised units
    exposure: float  # gain of the intensity mapping
    gamma: float


def _soft(d: np.ndarray, width: float = _EDGE) -> np.ndarray:
    """Smooth step: about 0 for d << -width, 0.5 at 0, about 1 for d >> width."""
    return 0.5 * (1.0 + np.tanh(d / width))


def sample_anatomy(rng: np.random.Generator) -> PatientAnatomy:
    """Draw one patient's anatomy; all parameters are plain floats, so the result is hashable."""
    sex = "F" if rng.random() < 0.5 else "M"
    age = int(rng.integers(20, 86))
    size_factor = 0.95 if sex == "F" else 1.0
    thorax_hw = float(rng.uniform(0.66, 0.80) * size_factor)
    body_hw = float(min(thorax_hw + rng.uniform(0.08, 0.17), 0.98))
    dome_right = float(rng.uniform(0.30, 0.44))
    dome_left = float(dome_right - rng.uniform(0.0, 0.07))
    vessels = []
    for side in (-1.0, 1.0):
        hx = side * rng.uniform(0.13, 0.19)
        hy = rng.uniform(-0.12, 0.02)
        for _ in range(int(rng.integers(8, 12))):
            angle = rng.uniform(-0.55 * np.pi, 0.45 * np.pi)  # fan from up-lateral to down-lateral
            length = rng.uniform(0.25, 0.62)
            x1 = hx + side * length * np.cos(angle) * 0.95
            y1 = hy + length * np.sin(angle) * 0.85
            vessels.append((float(hx), float(hy), float(x1), float(y1),
                            float(rng.uniform(0.010, 0.022)), float(rng.uniform(0.05, 0.10))))
    return PatientAnatomy(
        sex=sex,
        age=age,
        body_hw=body_hw,
        neck_hw=float(rng.uniform(0.20, 0.27)),
        shoulder_v=float(rng.uniform(-0.72, -0.58)),
        thorax_hw=thorax_hw,
        thorax_asym=float(rng.uniform(-0.04, 0.04)),
        apex_v=float(rng.uniform(-0.80, -0.68)),
        widest_v=float(rng.uniform(0.05, 0.25)),
        dome_v_left=dome_left,
        dome_v_right=dome_right,
        dome_depth=float(rng.uniform(0.12, 0.22)),
        med_shift=float(rng.uniform(-0.025, 0.025)),
        med_hw=float(rng.uniform(0.10, 0.14)),
        ctr=float(rng.uniform(0.40, 0.50)),
        heart_hb=float(rng.uniform(0.27, 0.33)),
        heart_tilt=float(rng.uniform(0.15, 0.45)),
        spine_hw=float(rng.uniform(0.055, 0.075)),
        rib_v0=float(rng.uniform(-0.80, -0.72)),
        rib_spacing=float(rng.uniform(0.125, 0.155)),
        rib_thickness=float(rng.uniform(0.016, 0.024)),
        rib_curve=float(rng.uniform(0.28, 0.42)),
        rib_amp=float(rng.uniform(0.05, 0.09) * (1.25 - age / 170.0)),
        lung_air=float(rng.uniform(0.45, 0.60)),
        soft_amp=float(rng.uniform(0.82, 0.95)),
        breast_amp=float(rng.uniform(0.04, 0.10)) if sex == "F" else 0.0,
        bubble_u=float(rng.uniform(0.25, 0.45)),
        bubble_amp=float(rng.uniform(0.0, 0.25)),
        vessels=tuple(vessels),
        noise=float(rng.uniform(0.015, 0.040)),
        blur=float(rng.uniform(0.006, 0.016)),
        exposure=float(rng.uniform(0.85, 1.10)),
        gamma=float(rng.uniform(0.85, 1.20)),
    )


def _lung_fields(a: PatientAnatomy, u: np.ndarray, v: np.ndarray, ctr: float, dv: float) -> dict:
    """Soft masks of the thoracic structures at body coordinates (u, v); any array shape.

    dv shifts the diaphragm (inspiration). Returns the masks `cavity` (inside the rib cage, above the
    costophrenic level), `lung` (aerated lung), `heart`, `mediastinum` and the helpers the renderer needs.
    """
    left = u < a.med_shift
    w = np.abs(u - a.med_shift)  # distance from the midline, towards each side's chest wall
    t_hw = np.where(left, _F(a.thorax_hw * (1 - a.thorax_asym / 2)), _F(a.thorax_hw * (1 + a.thorax_asym / 2)))
    # Lateral lung edge: rounded apex, widest at widest_v, slight taper towards the bases.
    rise = np.clip((a.widest_v - v) / (a.widest_v - a.apex_v), 0.0, None)
    lateral = t_hw * np.sqrt(np.clip(1.0 - rise**2.2, 0.0, 1.0)) * (1.0 - 0.06 * np.clip(v - a.widest_v, 0, None))
    cavity_lat = _soft(lateral - w)
    # Diaphragm domes: peak at 40 % of the half-width, dropping to the costophrenic angle laterally.
    dome_top = np.where(left, _F(a.dome_v_left), _F(a.dome_v_right)) + dv
    peak = 0.4 * t_hw
    lat_drop = a.dome_depth * (np.clip(w - peak, 0, None) / (t_hw - peak)) ** 2
    med_drop = 0.10 * (np.clip(peak - w, 0, None) / peak) ** 2
    dome = dome_top + lat_drop + med_drop
    below_dome = _soft(v - dome)
    # Heart: ellipse sitting on the (patient's left) dome, one third right of the midline, two thirds left.
    width = ctr * 2.0 * a.thorax_hw
    ha = width / 2.0
    hb = a.heart_hb * (1.0 + 0.6 * (ctr - a.ctr))
    hx = a.med_shift + 0.16 * width
    hy = a.dome_v_right + dv - 0.38 * hb
    du, dvv = u - hx, v - hy
    c, s = math.cos(a.heart_tilt), math.sin(a.heart_tilt)
    # Tilted ellipse whose silhouette is exactly `width` wide: sqrt((c * axis)^2 + (s * hb)^2) == ha.
    axis = math.sqrt(max(ha * ha - (s * hb) ** 2, (0.5 * ha) ** 2)) / c
    r = np.sqrt(((c * du + s * dvv) / axis) ** 2 + ((-s * du + c * dvv) / hb) ** 2)
    heart = _soft((1.0 - r) * min(axis, hb))
    # Upper mediastinum (widening downwards) with an aortic knob on the image right.
    m_hw = a.med_hw * (1.0 + 0.35 * np.clip((v + 0.6) / 0.6, 0.0, 1.0))
    upper = _soft(m_hw - np.abs(u - a.med_shift - 0.01)) * _soft(hy - v)
    knob = _soft(0.075 - np.hypot(u - a.med_shift - 0.11, v + 0.28))
    mediastinum = np.maximum(np.maximum(upper, knob), heart)
    cavity = cavity_lat * _soft(v - a.apex_v + 0.02)
    lung = cavity * (1.0 - below_dome) * (1.0 - mediastinum)
    return {"cavity": cavity, "lung": lung, "heart": heart, "mediastinum": mediastinum, "dome": dome,
            "below_dome": below_dome, "w": w, "t_hw": t_hw, "lateral": lateral}


def _segments_density(u: np.ndarray, v: np.ndarray, vessels: np.ndarray) -> np.ndarray:
    """Sum of tapered line segments (lung vessels) at (u, v); vessels is (K, 6)."""
    x0, y0, x1, y1, wid, amp = (vessels[:, i, None, None] for i in range(6))
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    d2 = (u - x0 - t * dx) ** 2 + (v - y0 - t * dy) ** 2
    w_t = wid * (1.0 - 0.6 * t)
    return np.sum(amp * (1.0 - 0.7 * t) * np.exp(-d2 / (w_t * w_t)), axis=0)


def _place_mass(a: PatientAnatomy, ctr: float, dv: float, radius: float, rng: np.random.Generator):
    """Pick a mass centre well inside the lung fields (rejection sampling on the analytic lung mask)."""
    cu = rng.uniform(-a.thorax_hw, a.thorax_hw, size=128)
    cv = rng.uniform(a.apex_v, max(a.dome_v_left, a.dome_v_right) + 0.15, size=128)
    fields = _lung_fields(a, cu, cv, ctr, dv)
    # Require the centre inside the lung and at least ~half a radius from the lung's lateral edge.
    inside = (fields["lung"] > 0.9) & (fields["lateral"] - fields["w"] > 0.5 * radius)
    idx = np.flatnonzero(inside)
    k = idx[0] if idx.size else int(np.argmax(fields["lung"]))
    return float(cu[k]), float(cv[k])


def render_phantom(anatomy: PatientAnatomy, finding: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one PA chest X-ray of `anatomy` with `finding` (one of FINDINGS).

    Returns a uint8 array of shape (size, size) with values 0..255: dark lungs and background air, bright
    bone, heart, mediastinum and abdomen, like a real radiograph. `rng` drives everything that varies between
    images of the same patient: pose, inspiration, exposure, noise and the finding's size and place.
    """
    if finding not in FINDINGS:
        raise ValueError(f"unknown finding {finding!r}; expected one of {FINDINGS}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    a = anatomy
    # Per-image pose and acquisition jitter.
    shift_x, shift_y = (float(d) for d in rng.uniform(-0.015, 0.015, size=2))
    angle = float(rng.uniform(-0.02, 0.02))
    scale = float(rng.uniform(0.985, 1.015))
    dv = float(rng.uniform(-0.015, 0.015))  # depth of inspiration
    gain = a.exposure * float(rng.uniform(0.95, 1.05))
    gamma = a.gamma * float(rng.uniform(0.95, 1.05))
    noise = a.noise * float(rng.uniform(0.8, 1.2))
    blur = a.blur * float(rng.uniform(0.85, 1.15))
    # Separate streams for the finding and for the pixel noise: the same rng state renders the same pose,
    # exposure and noise whatever the finding, so findings can be compared like for like.
    finding_rng = np.random.default_rng(rng.integers(0, 2**63, size=2))
    noise_rng = np.random.default_rng(rng.integers(0, 2**63, size=2))
    ctr = a.ctr
    if finding == "cardiomegaly":
        ctr = float(np.clip(a.ctr + finding_rng.uniform(0.11, 0.18), 0.55, 0.66))

    coords = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    x, y = coords[None, :], coords[:, None]
    c, s = math.cos(angle), math.sin(angle)
    u = (c * (x - shift_x) + s * (y - shift_y)) / scale
    v = (-s * (x - shift_x) + c * (y - shift_y)) / scale

    f = _lung_fields(a, u, v, ctr, dv)
    lung, w = f["lung"], f["w"]
    # Body outline: neck at the top, sloping shoulders, slight waist; soft tissue thicker in the middle.
    slope = np.clip((a.shoulder_v - v) / (a.shoulder_v + 1.0), 0.0, 1.0)
    body_hw = (a.body_hw - (a.body_hw - a.neck_hw) * slope**1.6) * (1.0 - 0.06 * np.clip(v - 0.3, 0.0, None))
    body = _soft(body_hw - np.abs(u), 0.02)
    density = body * a.soft_amp * (1.0 - 0.35 * (u / a.body_hw) ** 2)
    density = density + 0.08 * f["below_dome"] * body  # abdomen below the domes
    bubble = (u - a.med_shift - a.bubble_u) ** 2 / 0.09**2 + (v - a.dome_v_right - dv - 0.13) ** 2 / 0.06**2
    density = density - a.bubble_amp * _soft(1.0 - bubble, 0.3) * f["below_dome"]  # gastric air bubble
    if a.breast_amp > 0:
        breasts = _soft(0.30 - np.hypot(w - 0.5 * f["t_hw"], (v - 0.42) * 0.9), 0.06)
        density = density + a.breast_amp * breasts * body
    trachea = _soft(0.035 - np.abs(u - a.med_shift), 0.01) * _soft(-0.25 - v, 0.03) * _soft(v + 0.95)
    density = density - 0.12 * trachea

    # Aerated lung: deepest centrally, thinner towards the chest wall and the apex. Fluid replaces air.
    depth = 1.0 - 0.45 * (w / f["t_hw"]) ** 4 - 0.25 * np.clip((-0.3 - v) / 0.5, 0, 1)
    aerated = lung
    if finding == "pleural effusion":
        left = u < a.med_shift
        side = [(True, False), (False, True), (True, True)][int(finding_rng.choice(3, p=[0.35, 0.35, 0.30]))]
        height = [float(h) for h in finding_rng.uniform(0.04, 0.40, size=2)]
        opacity = float(finding_rng.uniform(0.70, 1.0))
        top = np.where(left, _F(a.dome_v_left - height[0]), _F(a.dome_v_right - height[1])) + dv
        # Meniscus: the fluid climbs along the lateral chest wall and blunts the costophrenic angle.
        level = top - 0.16 * np.clip(w / f["t_hw"], 0.0, 1.1) ** 3
        fill = np.clip((v - level) / 0.12, 0.0, 1.0) ** 0.7 * _soft(v - level, 0.015)
        fill = fill * np.where(left, side[0], side[1])
        aerated = lung * (1.0 - opacity * fill)
    density = density - aerated * a.lung_air * depth
    density = density + aerated * _segments_density(u, v, np.asarray(a.vessels, dtype=np.float32))

    # Bones: spine with vertebral bodies, posterior ribs, clavicles.
    spine = _soft(a.spine_hw - np.abs(u - a.med_shift), 0.01) * (0.8 + 0.2 * np.cos(2 * np.pi * v / 0.13))
    bones = 0.08 * spine * body
    k = np.arange(11, dtype=np.float32)[:, None, None]
    wn = np.clip(w / f["t_hw"], 0.0, 1.15)
    rib_v = a.rib_v0 + k * a.rib_spacing - 0.08 * wn + a.rib_curve * wn**2 * (1.0 + 0.04 * k)
    ribs = _soft(a.rib_thickness - np.abs(v - rib_v), 0.008).max(axis=0)
    ribs = ribs * _soft(w - a.spine_hw) * _soft(f["lateral"] + 0.04 - w, 0.015) * _soft(f["dome"] + 0.03 - v)
    ribs = ribs * (1.0 - 0.6 * f["mediastinum"])
    bones = bones + a.rib_amp * ribs
    clav_v = -0.70 + dv - 0.14 * np.clip(w - 0.08, 0, None) / 0.5
    clav = _soft(0.03 - np.abs(v - clav_v), 0.008) * _soft(w - 0.07) * _soft(0.66 - w, 0.02)
    density = density + bones + 1.3 * a.rib_amp * clav

    if finding == "soft tissue mass":
        radius = float(np.exp(finding_rng.uniform(np.log(0.05), np.log(0.15))))
        # Most masses are clear; one in sixteen is faint (and, if also small, close to invisible at 64 px).
        faint = finding_rng.random() < 0.0625
        amp = float(finding_rng.uniform(0.10, 0.20) if faint else finding_rng.uniform(0.28, 0.60))
        amp *= 0.75 + 0.25 * radius / 0.15
        amp = min(amp, 0.95 * a.lung_air)  # a mass is at most as dense as the soft tissue around the lungs
        mu, mv = _place_mass(a, ctr, dv, radius, finding_rng)
        r2 = ((u - mu) ** 2 + (v - mv) ** 2) / radius**2
        n_lobes, phase = int(finding_rng.integers(3, 6)), float(finding_rng.uniform(0.0, 2.0 * np.pi))
        lobes = 1.0 + 0.12 * np.cos(n_lobes * np.arctan2(v - mv, u - mu) + phase)
        density = density + amp * np.sqrt(np.clip(1.0 - r2 / lobes**2, 0.0, 1.0)) * f["cavity"]

    # Exposure: map density to intensity (dark air, bright bone), heel effect, blur, noise.
    img = np.clip(gain * (density * 0.95 + 0.04) * (1.0 + 0.05 * y), 0.0, 1.0) ** gamma
    sigma_px = blur * size / 2.0
    if sigma_px > 0.2:
        img = gaussian_filter(img, sigma_px, mode="nearest")
    img = img + noise_rng.standard_normal(size=img.shape, dtype=np.float32) * noise
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _finding_probs(class_weights: dict[str, float] | None) -> np.ndarray:
    if class_weights is None:
        return np.full(len(FINDINGS), 1.0 / len(FINDINGS))
    unknown = set(class_weights) - set(FINDINGS)
    if unknown:
        raise ValueError(f"unknown findings in class_weights: {sorted(unknown)}; expected names from {FINDINGS}")
    weights = np.array([float(class_weights.get(name, 0.0)) for name in FINDINGS])
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"class_weights must be non-negative with a positive sum, got {class_weights}")
    return weights / weights.sum()


def patient_id(index: int) -> str:
    """Demo patient identifier for a global patient number, e.g. 42 -> 'demo-p00042'."""
    return f"demo-p{index:05d}"


def make_phantom_images(
    n_patients: int,
    images_per_patient: int = 2,
    size: int = 64,
    seed: int = 0,
    class_weights: dict[str, float] | None = None,
    patient_offset: int = 0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Generate phantom images for patients patient_offset .. patient_offset + n_patients - 1.

    Returns (images, frame): images is uint8 of shape (n_patients * images_per_patient, size, size) in 0..255,
    patient-major; frame has one row per image with patient_id, image_index, finding, class_label (index into
    FINDINGS), one 0/1 column per finding, view, sex and age. Each image has exactly one finding, drawn with
    probabilities proportional to class_weights (default: equal). A patient's anatomy depends only on
    (seed, patient number), an image only on (seed, patient number, image index).
    """
    if n_patients < 0 or images_per_patient < 1:
        raise ValueError("n_patients must be >= 0 and images_per_patient >= 1")
    if seed < 0 or patient_offset < 0:
        raise ValueError("seed and patient_offset must be non-negative")
    probs = _finding_probs(class_weights)
    n = n_patients * images_per_patient
    images = np.empty((n, size, size), dtype=np.uint8)
    rows = []
    for p in range(n_patients):
        number = patient_offset + p
        anatomy = sample_anatomy(np.random.default_rng([seed, number, _ANATOMY_STREAM]))
        for k in range(images_per_patient):
            rng = np.random.default_rng([seed, number, _IMAGE_STREAM, k])
            label = int(rng.choice(len(FINDINGS), p=probs))
            images[p * images_per_patient + k] = render_phantom(anatomy, FINDINGS[label], size, rng)
            row = {"patient_id": patient_id(number), "image_index": k, "finding": FINDINGS[label],
                   "class_label": label}
            row.update({name: int(i == label) for i, name in enumerate(FINDINGS)})
            row.update({"view": "PA", "sex": anatomy.sex, "age": anatomy.age})
            rows.append(row)
    columns = ["patient_id", "image_index", "finding", "class_label", *FINDINGS, "view", "sex", "age"]
    return images, pd.DataFrame(rows, columns=columns)


def write_demo_dataset(
    out_dir: str | Path,
    n_patients: int = 300,
    images_per_patient: int = 2,
    size: int = 64,
    seed: int = 0,
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    patient_offset: int = 0,
) -> pd.DataFrame:
    """Write the demo data set: out_dir/images/<patient>_<k>.png and out_dir/split.csv (+ split.csv.json).

    PNGs are 8-bit greyscale (mode L), size x size. The CSV has the SPEC §1 columns in this order:
    image_path (relative to out_dir), patient_id, split, prompt, class_label, one 0/1 column per finding
    (named as in FINDINGS), view, sex, age, dataset. Splits are assigned per patient and stratified by
    findings. Returns the frame that was written.
    """
    from benchmark.data import write_split_csv
    from benchmark.data.splits.common import assign_patient_splits, image_strata

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, meta = make_phantom_images(n_patients, images_per_patient, size, seed, None, patient_offset)
    labels = meta[list(FINDINGS)].to_numpy(np.float32)
    splits = assign_patient_splits(meta["patient_id"], image_strata(labels, FINDINGS), split_fractions, seed)
    paths = []
    for image, pid, k in zip(images, meta["patient_id"], meta["image_index"], strict=True):
        rel = f"images/{pid}_{k}.png"
        Image.fromarray(np.ascontiguousarray(image)).save(out / rel)  # 2-D uint8 -> mode L
        paths.append(rel)
    prompts = [PROMPT_TEMPLATE.format(finding=NORMAL_PROMPT_TEXT if f == "normal" else f) for f in meta["finding"]]
    frame = pd.DataFrame({"image_path": paths, "patient_id": meta["patient_id"], "split": splits, "prompt": prompts,
                          "class_label": meta["class_label"]})
    for name in FINDINGS:
        frame[name] = meta[name]
    frame["view"] = meta["view"]
    frame["sex"] = meta["sex"]
    frame["age"] = meta["age"]
    sidecar = {"seed": seed, "generator": "benchmark.demo.phantoms", "n_patients": n_patients,
               "images_per_patient": images_per_patient, "size": size, "patient_offset": patient_offset,
               "split_fractions": list(split_fractions)}
    write_split_csv(frame, out / "split.csv", list(FINDINGS), "demo", sidecar)
    frame["dataset"] = "demo"
    return frame
