"""Chest X-ray image loading: greyscale pixels with their true bit depth, folder listing, fast pre-scans.

Images are returned with their true bit depth (8 or 16) so that normalisation can scale from the right
maximum (255 or 65535); nothing here rescales or pads, and an unreadable file is an error, never a blank.
"""

from __future__ import annotations

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


def image_suffixes() -> frozenset[str]:
    """File suffixes of every format Pillow (the harness's image loader) can open: PNG, JPEG, TIFF, BMP, WebP, ..."""
    from PIL import Image

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


def load_image(path: str | Path) -> XrayImage:
    """Decode one image file (PNG 8/16-bit, JPEG, ...; modes L, RGB, RGBA, I;16, P) into greyscale.

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


def undersized_note(paths: Sequence[str | Path], size: int, what: str) -> str:
    """A warning when images are smaller than ``size`` (a network's input side) on their shorter side, or "".

    Reads headers only. Such images are upsampled before the network sees them (a 1x1 image becomes a flat
    square), so their scores and features say little; they are scored, and the rows say how many there were.
    """
    small: list[tuple[Path, tuple[int, int]]] = []
    for path in paths:
        try:
            with Image.open(path) as image:
                if min(image.size) < size:
                    small.append((Path(path), image.size))
        except (OSError, SyntaxError, ValueError):
            continue  # unreadable files are reported by scan_images
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
