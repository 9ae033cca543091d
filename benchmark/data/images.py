"""Chest X-ray image loading: greyscale pixels with their true bit depth, folder listing, fast pre-scans.

Images are returned with their true bit depth (8 or 16) so that normalisation can scale from the right
maximum (255 or 65535); nothing here rescales or pads, and an unreadable file is an error, never a blank.
DICOM files (``.dcm`` / ``.dicom``, or the ``DICM`` preamble) are read with pydicom: the modality LUT (rescale
slope / intercept) and the first VOI LUT or window are applied, MONOCHROME1 is inverted so that bone is bright, and
the result is scaled from its own minimum and maximum to 16 bits (:func:`load_dicom`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from benchmark.core.errors import DataError, ImageLoadError


@dataclass(frozen=True)
class XrayImage:
    """A greyscale image as stored: ``pixels`` is ``(H, W)``, uint8 (8-bit) or uint16 (16-bit).

    ``bit_depth`` is the true depth of the file, so ``max_value`` (255 or 65535) is the right divisor for
    normalisation even when a 16-bit image happens to use only a small part of its range.
    """

    pixels: np.ndarray
    bit_depth: int
    path: Path
    mode: str

    @property
    def max_value(self) -> int:
        """Largest representable value: 255 for 8-bit, 65535 for 16-bit."""
        return (1 << self.bit_depth) - 1

    def to_float(self) -> np.ndarray:
        """Float32 ``(H, W)`` in [0, 1], scaled by the true maximum of the bit depth."""
        return self.pixels.astype(np.float32) / float(self.max_value)


_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}


def _to_grey(image: Image.Image) -> tuple[np.ndarray, int]:
    """Pixels ``(H, W)`` and bit depth of a decoded PIL image, without rescaling."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return np.asarray(image, dtype=np.uint16), 16
    if mode == "I":
        # 16-bit PNGs decode as 32-bit "I" in some Pillow versions; the values still fit 16 bits.
        pixels = np.asarray(image, dtype=np.int64)
        if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 65535:
            raise ValueError("32-bit integer image with values outside 0..65535 is not supported")
        return pixels.astype(np.uint16), 16
    if mode == "F":
        raise ValueError("floating-point images are not supported (save as 8- or 16-bit PNG)")
    if mode in ("L", "1", "P", "LA", "PA"):
        return np.asarray(image.convert("L"), dtype=np.uint8), 8
    if mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(image.convert("RGB").convert("L"), dtype=np.uint8), 8
    raise ValueError(f"unsupported image mode {mode!r}")


@functools.cache
def image_suffixes() -> frozenset[str]:
    """File suffixes of every format Pillow (the harness's image loader) can open: PNG, JPEG, TIFF, BMP, WebP, ..."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def _files_under(folder: Path) -> tuple[list[Path], list[Path]]:
    """(images the loader can decode, other files) below ``folder``; hidden files and folders are skipped."""
    suffixes = image_suffixes()
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return [p for p in files if p.suffix.lower() in suffixes], [p for p in files if p.suffix.lower() not in suffixes]


def image_files_under(folder: Path, skip_other: bool = False) -> list[Path]:
    """The images below ``folder``; any other file stops with the list of them, unless ``skip_other`` (then the
    list is printed and they are left out)."""
    images, other = _files_under(folder)
    if other:
        listing = "\n".join(f"  {p.relative_to(folder)}" for p in other[:50])
        more = f"\n  ... and {len(other) - 50} more" if len(other) > 50 else ""
        text = (f"{folder}: {len(other)} file(s) are not images the loader can decode (by suffix; DICOM is read from "
                f"split CSVs, not registered):\n{listing}{more}")
        if not skip_other:
            raise DataError(text + "\nremove them, or pass --skip-unreadable to register the rest (they are listed)")
        print(f"warning: {text}\nskipped (--skip-unreadable)", file=sys.stderr)
    return images


DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})


def is_dicom(path: Path) -> bool:
    """Whether ``path`` is a DICOM file: a DICOM suffix, or the ``DICM`` marker after the 128-byte preamble."""
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return True
    if suffix in image_suffixes():  # a PNG / JPEG / ... by name: not opened twice
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def load_dicom(path: str | Path) -> XrayImage:
    """Decode one DICOM image into a 16-bit greyscale :class:`XrayImage` ``(H, W)``.

    The stored values go through the modality LUT (``RescaleSlope`` / ``RescaleIntercept``) and the first VOI LUT or
    window (``WindowCenter`` / ``WindowWidth``) when the file has one; MONOCHROME1 (low values bright) is inverted;
    the result is scaled from its minimum and maximum to 0..65535. Multi-frame files, colour DICOMs and compressed
    pixel data without an installed decoder raise :class:`ImageLoadError` naming the file and the reason."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    path = Path(path)
    try:
        dataset = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as exc:
        raise ImageLoadError(path, f"not a readable DICOM file ({exc})") from exc
    if "PixelData" not in dataset:
        raise ImageLoadError(path, "no pixel data in the DICOM file (truncated, or not an image)")
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageLoadError(path, f"DICOM photometric interpretation {photometric!r} (a chest X-ray is "
                                   "MONOCHROME1 or MONOCHROME2)")
    if int(dataset.get("NumberOfFrames", 1) or 1) != 1:
        raise ImageLoadError(path, f"multi-frame DICOM ({dataset.NumberOfFrames} frames); one image per file")
    try:
        stored = dataset.pixel_array
        values = apply_voi_lut(apply_modality_lut(stored, dataset), dataset, index=0)
    except Exception as exc:  # pydicom raises RuntimeError / NotImplementedError / ValueError for what it cannot decode
        transfer = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(transfer, "name", transfer)
        raise ImageLoadError(path, f"DICOM pixel data not decodable ({type(exc).__name__}: {exc}; transfer syntax "
                                   f"{name})") from exc
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ImageLoadError(path, f"DICOM pixel data of shape {values.shape}, not one greyscale image")
    if not np.isfinite(values).all():
        raise ImageLoadError(path, "DICOM pixel data holds non-finite values after its LUTs")
    if photometric == "MONOCHROME1":
        values = -values
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    pixels = np.round(scaled * 65535.0).astype(np.uint16)
    return XrayImage(np.ascontiguousarray(pixels), 16, path, f"DICOM {photometric}")


def load_image(path: str | Path) -> XrayImage:
    """Decode one image file (PNG 8/16-bit, JPEG, ...; modes L, RGB, RGBA, I;16, P; DICOM) into greyscale.

    Colour images are converted with ITU-R 601 luma, alpha is discarded. Raises :class:`ImageLoadError`
    naming the file when it is missing, empty, truncated or not an image.
    """
    path = Path(path)
    if not path.exists():
        raise ImageLoadError(path, "file not found")
    if not path.is_file():
        raise ImageLoadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise ImageLoadError(path, "file is empty (0 bytes)")
    if is_dicom(path):
        return load_dicom(path)
    try:
        with Image.open(path) as image:
            image.load()
            pixels, bit_depth = _to_grey(image)
            mode = image.mode
    except UnidentifiedImageError as exc:
        raise ImageLoadError(path, "not an image file (unrecognised format)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(path, f"larger than the image-size limit of {Image.MAX_IMAGE_PIXELS:,} pixels "
                                   f"(Pillow's decompression-bomb guard: {exc}); raise it with --max-image-pixels "
                                   "if the image is genuine") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(path, f"unreadable or truncated image ({exc})") from exc
    if pixels.ndim != 2 or pixels.size == 0:
        raise ImageLoadError(path, f"decoded to an unexpected shape {pixels.shape}")
    return XrayImage(np.ascontiguousarray(pixels), bit_depth, path, mode)


def _dimensions(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header only (DICOM: ``Columns`` / ``Rows``)."""
    if is_dicom(path):
        import pydicom

        header = pydicom.dcmread(path, stop_before_pixels=True)
        return int(header.Columns), int(header.Rows)
    with Image.open(path) as image:
        return image.size


def undersized_note(paths: Sequence[str | Path], size: int, what: str) -> str:
    """A warning when images are smaller than ``size`` (a network's input side) on their shorter side, or "".

    Reads headers only. Such images are upsampled before the network sees them (a 1x1 image becomes a flat
    square), so their scores and features say little; they are scored, and the rows say how many there were.
    """
    small: list[tuple[Path, tuple[int, int]]] = []
    for path in paths:
        try:
            dims = _dimensions(Path(path))
        except Exception:  # unreadable files are reported by scan_images
            continue
        if min(dims) < size:
            small.append((Path(path), dims))
    if not small:
        return ""
    (first, (w, h)) = small[0]
    return (f"{len(small)} {what} image(s) smaller than the network's {size} px input (e.g. {first}, {w}x{h}): "
            "upsampled, so their figures carry little information")


@dataclass(frozen=True)
class ImageProblem:
    """One bad image found by :func:`scan_images`: which row, which file, what is wrong."""

    row: int
    path: Path
    reason: str


def scan_images(paths: Iterable[str | Path], workers: int = 4) -> list[ImageProblem]:
    """Decode every image once and return all problems (missing, empty, unreadable), in row order."""
    from concurrent.futures import ThreadPoolExecutor

    path_list = [Path(p) for p in paths]

    def check(item: tuple[int, Path]) -> ImageProblem | None:
        row, path = item
        try:
            load_image(path)
        except ImageLoadError as exc:
            return ImageProblem(row, path, exc.reason)
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(check, enumerate(path_list)))
    return [r for r in results if r is not None]
