"""Decoded, resized training images on disk: decode each image once, then read it back with no decoding.

The retrained stage trains many units (settings x sizes x seeds) for many epochs on the same images. Decoding a PNG
or JPEG and resizing it costs far more than reading the result, and holding every image in memory does not scale
(20,000 + 20,000 images at 224 px are 8 GB as float32). So the images a sweep needs are decoded once into this cache
and streamed from it by every unit, every epoch and every later sweep on the same files.

What is stored is exactly what the network sees: :func:`benchmark.data.preprocess.xrv_input` (xrv normalisation
from the true bit depth, centre crop, resize), float32 ``(size, size)`` in [-1024, 1024]. Reading it back gives the
same bits as decoding again, so the figures do not depend on whether the cache was used. (A uint8 cache would be a
quarter of the size but moves each resized pixel by up to half a grey level, about 4 xrv units, and with it every
trained model.) Disk: ``4 * size**2`` bytes per image (196 KiB at 224 px).

Layout: ``<root>/xrv-<size>px-<preprocessing hash>/shard-*.npy`` (float32 ``(n, size, size)``), each with a
``shard-*.json`` index written after it (the keys of its rows, in order). An image's key is the SHA-256 of its
absolute path, byte size and modification time (ns): an image that changes gets a new key and is decoded again.
Shards are written atomically (temporary name, then rename), so concurrent builders and killed runs never leave a
half-written shard that is read. Root: ``$SYNTHCXR_CACHE/images``, else ``<results>/cache/images``.

Reading (:class:`CachedImages`) uses ``os.pread`` on the shard files, not memory maps, so a process's resident
memory holds only the batches in flight, whatever the number of images; the operating system's page cache keeps hot
shards in memory without counting against the process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from benchmark.core.errors import DataError, ImageLoadError
from benchmark.core.results import cache_dir
from benchmark.data.preprocess import XrayDataset, check_xrv_range

#: what a cached image is; part of the cache folder's name, so a change of preprocessing never reads old images
PREPROCESSING = ("benchmark.data.preprocess.xrv_input: xrv.utils.normalize from the true bit depth, "
                 "XRayCenterCrop, XRayResizer; float32")
#: images per shard are chosen so that one shard is about this many bytes (the builder holds one shard in memory)
SHARD_BYTES = 128 * 1024**2
BYTES_PER_PIXEL = 4


def _bytes(n: int) -> str:
    """``n`` bytes in decimal units: 20.5 kB, 7.84 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}" if unit != "GB" else f"{n / scale:.2f} GB"
    return f"{n} B"


def default_image_cache_dir(results_dir: str | Path | None = None) -> Path:
    """``$SYNTHCXR_CACHE/images`` when set, else ``<results dir>/cache/images``."""
    return cache_dir("images", results_dir)


def image_key(path: str | Path) -> str:
    """SHA-256 (hex) of the file's absolute path, byte size and modification time in ns; names the file when it is
    missing (:class:`ImageLoadError`)."""
    path = Path(path).absolute()
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise ImageLoadError(path, "file not found") from exc
    except OSError as exc:
        raise ImageLoadError(path, f"cannot read the file ({exc})") from exc
    return hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()


@dataclass(frozen=True)
class _Shard:
    path: str
    offset: int  # bytes before row 0 (the .npy header)
    rows: int


def _shard_of(path: Path, size: int) -> _Shard:
    """The header of a shard written by :class:`ImageCache`; ValueError if it is not one of ``size`` px images."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f".npy format version {version}")
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(handle)
        offset = handle.tell()
    if fortran or dtype != np.float32 or len(shape) != 3 or tuple(shape[1:]) != (size, size):
        raise ValueError(f"shape {shape}, dtype {dtype}, fortran order {fortran}")
    expected = offset + int(np.prod(shape)) * BYTES_PER_PIXEL
    if path.stat().st_size != expected:
        raise ValueError(f"{path.stat().st_size} bytes where {expected} were expected (cut off)")
    return _Shard(str(path), offset, int(shape[0]))


class CachedImages(Dataset):
    """Images read from the cache: item ``i`` is a float32 tensor ``(1, size, size)`` in [-1024, 1024], the same
    values :func:`benchmark.data.preprocess.xrv_input` gives for ``paths[i]``.

    Holds only where each image lies (shard, row); every read is one ``os.pread``. Safe in DataLoader workers
    (each process opens its own file descriptors). ``select`` and ``+`` make subsets and concatenations without
    reading anything.
    """

    def __init__(self, shards: Sequence[_Shard], where: np.ndarray, size: int, paths: Sequence[str]):
        self.shards = list(shards)
        self.where = np.asarray(where, dtype=np.int64).reshape(-1, 2)  # (shard index, row)
        self.size = int(size)
        self.paths = [str(p) for p in paths]
        self._fds: dict[int, int] = {}
        self._pid = -1

    def __len__(self) -> int:
        return len(self.where)

    @property
    def nbytes(self) -> int:
        """Bytes of the images as float32 (what :meth:`load` would hold in memory)."""
        return len(self) * self.size**2 * BYTES_PER_PIXEL

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # a forked worker: descriptors are per process
            self._fds, self._pid = {}, os.getpid()
        if shard not in self._fds:
            self._fds[shard] = os.open(self.shards[shard].path, os.O_RDONLY)
        return self._fds[shard]

    def __getitem__(self, index: int) -> torch.Tensor:
        shard, row = (int(v) for v in self.where[index])
        count = self.size**2 * BYTES_PER_PIXEL
        data = os.pread(self._fd(shard), count, self.shards[shard].offset + row * count)
        if len(data) != count:
            raise ImageLoadError(Path(self.paths[index]), f"its cached copy in {self.shards[shard].path} is cut off; "
                                 "delete the cache folder and rerun")
        return torch.frombuffer(bytearray(data), dtype=torch.float32).reshape(1, self.size, self.size)

    def select(self, indices: Sequence[int] | np.ndarray) -> CachedImages:
        """The images at ``indices`` (in that order)."""
        indices = np.asarray(indices, dtype=np.int64)
        return CachedImages(self.shards, self.where[indices], self.size, [self.paths[i] for i in indices])

    def __add__(self, other: CachedImages) -> CachedImages:
        if other.size != self.size:
            raise ValueError(f"cannot join images of {self.size} and {other.size} px")
        offset = len(self.shards)
        where = other.where.copy()
        where[:, 0] += offset
        return CachedImages(self.shards + other.shards, np.concatenate([self.where, where]), self.size,
                            self.paths + other.paths)

    def load(self) -> torch.Tensor:
        """All images in memory: float32 ``(N, 1, size, size)`` (``nbytes`` of memory)."""
        out = torch.empty(len(self), 1, self.size, self.size)
        for i in range(len(self)):
            out[i] = self[i]
        return out

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fds"], state["_pid"] = {}, -1
        return state

    def __del__(self) -> None:
        if getattr(self, "_pid", -1) == os.getpid():
            for fd in self._fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)


class ImageCache:
    """The cache of ``size`` px xrv inputs under ``root`` (see the module docstring for the layout)."""

    def __init__(self, root: str | Path, size: int):
        self.size = int(size)
        tag = hashlib.sha256(PREPROCESSING.encode()).hexdigest()[:12]
        self.folder = Path(root) / f"xrv-{self.size}px-{tag}"

    @property
    def image_bytes(self) -> int:
        """Disk bytes of one cached image."""
        return self.size**2 * BYTES_PER_PIXEL

    def _index(self) -> tuple[list[_Shard], dict[str, tuple[int, int]]]:
        """Readable shards and where each key lies; an unreadable or cut-off shard is skipped with a warning."""
        shards: list[_Shard] = []
        where: dict[str, tuple[int, int]] = {}
        if not self.folder.is_dir():
            return shards, where
        for index_file in sorted(self.folder.glob("shard-*.json")):
            data_file = index_file.with_suffix(".npy")
            try:
                keys = json.loads(index_file.read_text())["keys"]
                shard = _shard_of(data_file, self.size)
                if len(keys) != shard.rows:
                    raise ValueError(f"{len(keys)} keys for {shard.rows} rows")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                print(f"warning: ignoring unreadable image-cache shard {data_file} ({exc})", file=sys.stderr)
                continue
            number = len(shards)
            shards.append(shard)
            for row, key in enumerate(keys):
                where.setdefault(key, (number, row))
        return shards, where

    def missing(self, paths: Sequence[str | Path]) -> list[Path]:
        """The paths whose current version is not in the cache (each listed once)."""
        _, where = self._index()
        out, seen = [], set()
        for path in paths:
            key = image_key(path)
            if key not in where and key not in seen:
                seen.add(key)
                out.append(Path(path))
        return out

    def build(self, paths: Sequence[str | Path], num_workers: int = 0, progress: bool = True,
              what: str = "images") -> int:
        """Decode and store every image of ``paths`` not yet cached; returns how many were decoded.

        The disk footprint is printed before anything is decoded, and a disk that cannot hold it stops the run with
        :class:`DataError` (nothing is written). An unreadable image stops it with :class:`ImageLoadError` naming
        the file; shards already written stay valid. Every batch is range-checked.
        """
        todo = self.missing(paths)
        if not todo:
            return 0
        need = len(todo) * self.image_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.folder).free
        if progress:
            print(f"image cache: decoding {len(todo)} {what} at {self.size} px once, {_bytes(need)} in "
                  f"{self.folder} ({_bytes(free)} free)", flush=True)
        if need > free:
            raise DataError(f"the image cache needs {_bytes(need)} for {len(todo)} images at {self.size} px "
                            f"but {self.folder} has {_bytes(free)} free; free some space, or point $SYNTHCXR_CACHE "
                            "(or --image-cache) at a larger disk")
        per_shard = max(1, SHARD_BYTES // self.image_bytes)
        from benchmark.core.progress import progress as progress_display

        bar = progress_display(len(todo), f"image cache: decoding {what}", "img", enabled=progress)
        for start in range(0, len(todo), per_shard):
            chunk = todo[start:start + per_shard]
            keys = [image_key(p) for p in chunk]
            images = np.empty((len(chunk), self.size, self.size), dtype=np.float32)
            loader = DataLoader(XrayDataset(chunk, self.size), batch_size=32, num_workers=num_workers)
            for batch, indices in loader:
                check_xrv_range(batch, where=f"batch starting at {chunk[int(indices[0])]}")
                images[indices.numpy()] = batch[:, 0].numpy()
                bar.update(len(indices))
            self._write_shard(keys, images)
        bar.close()
        return len(todo)

    def _write_shard(self, keys: Sequence[str], images: np.ndarray) -> None:
        name = f"shard-{os.getpid()}-{secrets.token_hex(6)}"
        for suffix, write in ((".npy", lambda handle: np.save(handle, images)),
                              (".json", lambda handle: handle.write(json.dumps({"keys": list(keys)}).encode()))):
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".shard-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    write(handle)
                os.replace(tmp, self.folder / f"{name}{suffix}")
            except OSError as exc:
                Path(tmp).unlink(missing_ok=True)
                (self.folder / f"{name}.npy").unlink(missing_ok=True)
                raise DataError(f"could not write the image cache in {self.folder} ({exc})") from exc
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def images(self, paths: Sequence[str | Path]) -> CachedImages:
        """The cached images of ``paths`` (in order); every one must have been built (:meth:`build`)."""
        shards, where = self._index()
        rows = []
        for path in paths:
            found = where.get(image_key(path))
            if found is None:
                raise DataError(f"{path}: not in the image cache {self.folder} (it changed after the cache was "
                                "built, or the cache was removed); rerun")
            rows.append(found)
        return CachedImages(shards, np.asarray(rows, dtype=np.int64), self.size, [str(p) for p in paths])


def cached_images(paths: Sequence[str | Path], size: int, root: str | Path | None = None, num_workers: int = 0,
                  progress: bool = True, what: str = "images") -> CachedImages:
    """Build what is missing and return the cached images of ``paths`` (one process; see :class:`ImageCache`)."""
    cache = ImageCache(root if root is not None else default_image_cache_dir(), size)
    cache.build(paths, num_workers=num_workers, progress=progress, what=what)
    return cache.images(paths)
