"""The decoded-image cache of the retrained stage: what it stores is exactly what decoding gives, each image is decoded
once and reused, a changed image is decoded again, a broken shard or a full disk is reported, and training on streamed
images gives the same model and the same rows as training on images held in memory."""

from __future__ import annotations

import os
from collections import namedtuple
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import benchmark.data.image_cache as image_cache
from benchmark.core.errors import DataError, ImageLoadError
from benchmark.data import read_split_csv
from benchmark.data.image_cache import ImageCache, cached_images
from benchmark.demo.phantoms import write_demo_dataset
from benchmark.demo.run import DemoConfig, faithful_set
from benchmark.models.training import TrainConfig, load_tensors, train_classifier
from benchmark.utility.retrained import RetrainedConfig, run_retrained_stage

SIZE = 32


def _pngs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` 8-bit PNGs of different shapes (crop and resize both matter) and one 16-bit PNG."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (40 + 3 * i, 50), dtype=np.uint8)).save(path)
        paths.append(path)
    path = folder / "sixteen.png"
    Image.fromarray(rng.integers(0, 65536, (70, 64)).astype(np.uint16)).save(path)
    return [*paths, path]


def test_cached_images_are_bit_for_bit_what_decoding_gives(tmp_path: Path) -> None:
    paths = _pngs(tmp_path / "png", 9)
    images = cached_images(paths, SIZE, root=tmp_path / "cache", progress=False)
    decoded = load_tensors(paths, SIZE)
    assert len(images) == 10 and images.nbytes == 10 * SIZE * SIZE * 4
    assert torch.equal(images.load(), decoded)  # 8-bit and 16-bit alike, no quantisation
    assert torch.equal(images.select([9, 2]).load(), decoded[[9, 2]])
    joined = images.select([1]) + images.select([0, 9])
    assert torch.equal(joined.load(), decoded[[1, 0, 9]]) and joined.paths == [str(paths[i]) for i in (1, 0, 9)]


def test_workers_read_the_same_images_in_the_same_order(tmp_path: Path) -> None:
    paths = _pngs(tmp_path / "png", 20)
    images = cached_images(paths, SIZE, root=tmp_path / "cache", progress=False)
    streamed = torch.cat(list(DataLoader(images, batch_size=4, num_workers=2)))
    assert torch.equal(streamed, load_tensors(paths, SIZE))


def test_an_image_is_decoded_once_and_again_only_when_it_changes(tmp_path: Path) -> None:
    paths = _pngs(tmp_path / "png", 5)
    cache = ImageCache(tmp_path / "cache", SIZE)
    assert cache.build(paths, progress=False) == 6
    assert cache.build(paths, progress=False) == 0  # a second unit / sweep decodes nothing
    assert cache.build(paths[:2], progress=False) == 0
    before = cache.images(paths).load()
    Image.fromarray(np.tile(np.arange(0, 250, 5, dtype=np.uint8), (40, 1))).save(paths[3])
    os.utime(paths[3], ns=(1, 1))  # a new modification time, whatever the file system's resolution
    assert cache.missing(paths) == [paths[3]]
    assert cache.build(paths, progress=False) == 1
    after = cache.images(paths).load()
    assert torch.equal(after, load_tensors(paths, SIZE))
    assert torch.equal(after[[0, 1, 2, 4, 5]], before[[0, 1, 2, 4, 5]]) and not torch.equal(after[3], before[3])


def test_another_size_is_another_cache(tmp_path: Path) -> None:
    paths = _pngs(tmp_path / "png", 3)
    cached_images(paths, SIZE, root=tmp_path / "cache", progress=False)
    assert ImageCache(tmp_path / "cache", 48).missing(paths) == paths
    assert torch.equal(cached_images(paths, 48, root=tmp_path / "cache", progress=False).load(),
                       load_tensors(paths, 48))


def test_the_footprint_is_printed_first_and_a_disk_too_small_stops_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    paths = _pngs(tmp_path / "png", 4)
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(image_cache.shutil, "disk_usage", lambda _: Usage(10**6, 10**6 - 1000, 1000))
    cache = ImageCache(tmp_path / "cache", SIZE)
    with pytest.raises(DataError, match=r"needs 20\.5 kB for 5 images at 32 px but .* has 1 kB free"):
        cache.build(paths)
    assert "decoding 5 images at 32 px once" in capsys.readouterr().out
    assert not list(cache.folder.glob("shard-*"))
    monkeypatch.undo()
    assert cache.build(paths, progress=False) == 5


def test_an_unreadable_image_is_named_and_the_shards_already_written_stay(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _pngs(tmp_path / "png", 5)
    paths[4].write_bytes(paths[4].read_bytes()[:60])  # cut off
    monkeypatch.setattr(image_cache, "SHARD_BYTES", 2 * SIZE * SIZE * 4)  # two images per shard
    cache = ImageCache(tmp_path / "cache", SIZE)
    with pytest.raises(ImageLoadError, match=r"/4\.png"):
        cache.build(paths, progress=False)
    assert cache.missing(paths) == paths[4:]  # the first four are kept
    with pytest.raises(DataError, match=r"/4\.png: not in the image cache"):
        cache.images(paths)


def test_a_cut_off_shard_is_ignored_with_a_warning_and_its_images_decoded_again(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    paths = _pngs(tmp_path / "png", 3)
    cache = ImageCache(tmp_path / "cache", SIZE)
    cache.build(paths, progress=False)
    (shard,) = cache.folder.glob("shard-*.npy")
    shard.write_bytes(shard.read_bytes()[:-100])
    assert cache.missing(paths) == paths
    assert "ignoring unreadable image-cache shard" in capsys.readouterr().err
    assert cache.build(paths, progress=False) == 4
    assert torch.equal(cache.images(paths).load(), load_tensors(paths, SIZE))


def test_training_on_streamed_images_gives_the_same_model_as_training_on_decoded_images(tmp_path: Path) -> None:
    paths = _pngs(tmp_path / "png", 39, seed=3)
    rng = np.random.default_rng(1)
    labels = (rng.random((40, 2)) < 0.5).astype(np.float32)
    config = TrainConfig(image_size=SIZE, epochs=2, batch_size=8, patience=2, num_workers=2, cpu_threads=1)
    streamed = cached_images(paths, SIZE, root=tmp_path / "cache", progress=False)
    in_memory = train_classifier(load_tensors(paths[:30], SIZE), labels[:30], load_tensors(paths[30:], SIZE),
                                 labels[30:], config, progress=False)
    from_cache = train_classifier(streamed.select(range(30)), labels[:30], streamed.select(range(30, 40)),
                                  labels[30:], config, progress=False)
    assert from_cache.history == in_memory.history
    for name, value in in_memory.model.state_dict().items():
        assert torch.equal(from_cache.model.state_dict()[name], value), name


@pytest.fixture(scope="module")
def split_and_set(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cache_sweep")
    write_demo_dataset(root / "real", n_patients=120, images_per_patient=2, size=SIZE, seed=0)
    real = read_split_csv(root / "real" / "split.csv")
    frame = real.frame.copy()
    frame["source_row"] = np.arange(len(frame))
    frame["finding"] = [real.classes[int(c)] for c in frame["class_label"]]
    train = frame[frame["split"] == "train"].reset_index(drop=True)
    return real, faithful_set(root / "faithful", train, real.classes, DemoConfig(image_size=SIZE)), root


def test_a_sweep_larger_than_the_memory_budget_streams_and_gives_the_same_rows(
        split_and_set, monkeypatch: pytest.MonkeyPatch) -> None:
    real, synthetic, root = split_and_set
    loads: list[int] = []
    load = image_cache.CachedImages.load
    monkeypatch.setattr(image_cache.CachedImages, "load", lambda self: loads.append(len(self)) or load(self))
    config = dict(settings=("real", "mixed"), seeds=(0,), epochs=1, patience=1, image_size=SIZE, batch_size=16,
                  n_resamples=200, progress=False, cpu_threads=1, num_workers=2)
    in_memory = run_retrained_stage(real, synthetic, RetrainedConfig(**config), model_name="m",
                                    results_dir=root / "memory")
    assert len(loads) == 2 * 2  # each unit's training and val images were read into memory
    loads.clear()
    streamed = run_retrained_stage(real, synthetic, RetrainedConfig(**config, memory_budget_gb=1e-6), model_name="m",
                                   results_dir=root / "streamed")
    assert loads == []  # nothing was held in memory: every batch came from the cache files
    volatile = {"run_id", "timestamp", "train_seconds", "config_hash", "report_dir"}
    columns = [c for c in in_memory.table.columns if c not in volatile]
    pd.testing.assert_frame_equal(streamed.table[columns], in_memory.table[columns])
    assert len(streamed.table) == 2 * 2 * len(real.classes)


def test_every_unit_and_every_later_sweep_reads_the_cache_instead_of_decoding(
        split_and_set, monkeypatch: pytest.MonkeyPatch) -> None:
    real, synthetic, root = split_and_set
    decoded: list[int] = []
    build = ImageCache.build
    monkeypatch.setattr(ImageCache, "build", lambda self, paths, **kw: decoded.append(build(self, paths, **kw)))
    config = RetrainedConfig(settings=("real:60", "synthetic:60"), seeds=(0, 1), epochs=1, patience=1,
                             image_size=SIZE, batch_size=16, n_resamples=200, progress=False, cpu_threads=1,
                             image_cache=str(root / "shared_cache"))
    first = run_retrained_stage(real, synthetic, config, model_name="a", results_dir=root / "first")
    used = {str(p) for p in real.subset("val").image_paths() + real.subset("test").image_paths()}
    for listing in first.run_folder.glob("units/*/training_set.csv"):
        used |= set(pd.read_csv(listing)["image"].astype(str))
    assert sum(decoded) == len(used)  # each image the four units and their evaluation use, decoded once
    decoded.clear()
    run_retrained_stage(real, synthetic, RetrainedConfig(**{**config.__dict__, "settings": ("synthetic:60",),
                                                           "seeds": (1,)}),
                        model_name="b", results_dir=root / "second")
    assert sum(decoded) == 0  # another sweep on the same files: nothing decoded again
