"""Feature extraction (benchmark.fidelity.features): extractors built through their real loaders, and the feature cache.

The xrv DenseNet is random-initialised with a fixed seed, saved where torchxrayvision's loader looks for the
``densenet121-res224-all`` weights in a temporary cache, and loaded through that loader (no download). It runs at
32 px to keep the suite fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torchxrayvision as xrv

from benchmark.data import ImageLoadError, load_image
from benchmark.data.preprocess import xrv_input
from benchmark.fidelity.features import (
    ExtractorUnavailableError,
    FeatureExtractor,
    extract_features,
    load_extractor,
)
from benchmark.models.classifiers import place_in_xrv_cache
from tests.conftest import REPO_ROOT, write_png

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def place_random_xrv(cache_dir: Path, seed: int = 0) -> torch.nn.Module:
    """A random-init xrv DenseNet-121 (seeded) saved as xrv's ``densenet121-res224-all`` file in ``cache_dir``."""
    torch.manual_seed(seed)
    model = xrv.models.DenseNet(weights=None).eval()
    place_in_xrv_cache(model, "all", cache_dir)
    return model


def random_xrv_extractor(cache_dir: Path, image_size: int = 32, seed: int = 0) -> FeatureExtractor:
    """:func:`place_random_xrv`, then the xrv extractor loaded through torchxrayvision's loader from that cache."""
    place_random_xrv(cache_dir, seed)
    return load_extractor("xrv", "all", image_size=image_size, device="cpu", xrv_cache_dir=cache_dir)


def counting(extractor: FeatureExtractor) -> tuple[FeatureExtractor, list[int]]:
    """The same extractor, recording the batch size of every forward call in the returned list."""
    calls: list[int] = []
    embed: Callable[[torch.Tensor], torch.Tensor] = extractor.embed

    def counted(batch: torch.Tensor) -> torch.Tensor:
        calls.append(len(batch))
        return embed(batch)

    return dataclasses.replace(extractor, embed=counted), calls


def write_images(folder: Path, n: int, size: int = 32, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    return [write_png(folder / f"img{i}.png", rng.integers(0, 256, (size, size), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def xrv_extractor(tmp_path_factory: pytest.TempPathFactory) -> FeatureExtractor:
    return random_xrv_extractor(tmp_path_factory.mktemp("xrv-cache"))


def test_xrv_extractor_uses_the_weights_placed_in_the_xrv_cache(tmp_path: Path) -> None:
    placed = place_random_xrv(tmp_path / "xrv", seed=3)
    extractor = load_extractor("xrv", "all", image_size=32, device="cpu", xrv_cache_dir=tmp_path / "xrv")
    paths = write_images(tmp_path / "images", 3)
    result = extract_features(paths, extractor, cache_dir=tmp_path / "cache")
    with torch.no_grad():
        expected = placed.features2(torch.from_numpy(np.stack([xrv_input(load_image(p), 32) for p in paths])))
    assert extractor.name == "xrv:densenet121-res224-all@32px"
    assert result.features.shape == (3, 1024) and result.features.dtype == np.float32
    np.testing.assert_allclose(result.features, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_second_extraction_reads_every_feature_from_the_cache(tmp_path: Path, xrv_extractor: FeatureExtractor) -> None:
    paths = write_images(tmp_path / "images", 5)
    extractor, calls = counting(xrv_extractor)
    first = extract_features(paths, extractor, cache_dir=tmp_path / "cache", batch_size=2)
    assert sum(calls) == 5 and (first.n_computed, first.n_cached) == (5, 0)
    calls.clear()
    second = extract_features(paths, extractor, cache_dir=tmp_path / "cache", batch_size=2)
    assert calls == []
    assert (second.n_computed, second.n_cached) == (0, 5)
    np.testing.assert_array_equal(second.features, first.features)


def test_identical_files_are_computed_once(tmp_path: Path, xrv_extractor: FeatureExtractor) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32), dtype=np.uint8)
    paths = [write_png(tmp_path / "a.png", pixels), write_png(tmp_path / "copy" / "b.png", pixels)]
    extractor, calls = counting(xrv_extractor)
    result = extract_features(paths, extractor, cache_dir=tmp_path / "cache")
    assert sum(calls) == 1 and result.n_computed == 1
    np.testing.assert_array_equal(result.features[0], result.features[1])


def test_a_changed_file_is_recomputed(tmp_path: Path, xrv_extractor: FeatureExtractor) -> None:
    paths = write_images(tmp_path / "images", 3)
    extract_features(paths, xrv_extractor, cache_dir=tmp_path / "cache")
    write_png(paths[1], np.full((32, 32), 7, dtype=np.uint8))
    extractor, calls = counting(xrv_extractor)
    result = extract_features(paths, extractor, cache_dir=tmp_path / "cache")
    assert sum(calls) == 1 and (result.n_computed, result.n_cached) == (1, 2)


def test_other_weights_or_input_size_never_reuse_cached_features(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "images", 2)
    base = random_xrv_extractor(tmp_path / "xrv-a", image_size=32, seed=0)
    extract_features(paths, base, cache_dir=tmp_path / "cache")
    other_size = load_extractor("xrv", "all", image_size=48, device="cpu", xrv_cache_dir=tmp_path / "xrv-a")
    other_weights = random_xrv_extractor(tmp_path / "xrv-b", image_size=32, seed=1)
    assert base.fingerprint != other_weights.fingerprint
    assert len({base.cache_key, other_size.cache_key, other_weights.cache_key}) == 3
    for extractor in (other_size, other_weights):
        assert extract_features(paths, extractor, cache_dir=tmp_path / "cache").n_computed == 2
    spaces = sorted((tmp_path / "cache").iterdir())
    assert len(spaces) == 3
    assert {json.loads((s / "space.json").read_text())["name"] for s in spaces} == {
        "xrv:densenet121-res224-all@32px", "xrv:densenet121-res224-all@48px"}


def test_an_unreadable_image_stops_extraction_with_its_name_and_keeps_finished_features(
        tmp_path: Path, xrv_extractor: FeatureExtractor) -> None:
    paths = write_images(tmp_path / "images", 3)
    bad = tmp_path / "images" / "truncated.png"
    bad.write_bytes(paths[0].read_bytes()[:60])
    with pytest.raises(ImageLoadError, match=r"truncated\.png"):
        extract_features([*paths, bad], xrv_extractor, cache_dir=tmp_path / "cache", batch_size=1)
    extractor, calls = counting(xrv_extractor)
    again = extract_features(paths, extractor, cache_dir=tmp_path / "cache")
    assert calls == [] and again.n_cached == 3


def test_a_missing_image_stops_before_any_forward_pass(tmp_path: Path, xrv_extractor: FeatureExtractor) -> None:
    paths = write_images(tmp_path / "images", 2)
    extractor, calls = counting(xrv_extractor)
    with pytest.raises(ImageLoadError, match=r"gone\.png: file not found"):
        extract_features([*paths, tmp_path / "gone.png"], extractor, cache_dir=tmp_path / "cache")
    assert calls == []


def test_pixel_vectors_scale_16_bit_images_by_the_true_maximum(tmp_path: Path) -> None:
    pixels = np.zeros((40, 32), dtype=np.uint16)
    pixels[:, 16:] = 4095  # a 12-bit detector's white, stored in a 16-bit PNG
    path = write_png(tmp_path / "sixteen.png", pixels)
    extractor = load_extractor("pixels", image_size=16, device="cpu")
    vector = extract_features([path], extractor, cache_dir=tmp_path / "cache").features[0].reshape(16, 16)
    np.testing.assert_allclose(vector[:, 8:], 4095 / 65535, rtol=1e-6)
    np.testing.assert_allclose(vector[:, :8], 0.0)


def test_raddino_extractor_loads_a_local_model_folder_through_transformers(tmp_path: Path) -> None:
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          image_size=32, patch_size=8)
    Dinov2Model(config).eval().save_pretrained(tmp_path / "rad-dino")
    processor = BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                  image_mean=[0.5307] * 3, image_std=[0.2583] * 3)
    processor.save_pretrained(tmp_path / "rad-dino")
    extractor = load_extractor("raddino", str(tmp_path / "rad-dino"), device="cpu")
    paths = write_images(tmp_path / "images", 3, size=40)
    result = extract_features(paths, extractor, cache_dir=tmp_path / "cache")
    model = Dinov2Model.from_pretrained(tmp_path / "rad-dino").eval()
    grey = [np.repeat(load_image(p).to_float()[:, :, None], 3, axis=2) for p in paths]
    with torch.no_grad():
        inputs = processor(images=grey, return_tensors="pt", do_rescale=False)["pixel_values"]
        expected = model(pixel_values=inputs).pooler_output.numpy()
    assert extractor.kind == "raddino" and extractor.dim == 32
    np.testing.assert_allclose(result.features, expected, rtol=1e-4, atol=1e-5)


def test_inception_without_torch_fidelity_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchmetrics.image.fid as tm_fid

    monkeypatch.setattr(tm_fid, "_TORCH_FIDELITY_AVAILABLE", False)  # torchmetrics' own check, as without the package
    with pytest.raises(ExtractorUnavailableError, match=r"needs torch-fidelity.*pip install torch-fidelity"):
        load_extractor("inception", device="cpu")


def test_inception_weights_that_cannot_be_fetched_name_the_local_file_option(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    import torch.hub

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ExtractorUnavailableError, match=r"cannot load the Inception weights.*--weights"):
        load_extractor("inception", device="cpu")


WORKER = """
import sys
from pathlib import Path

import numpy as np
import torch

from benchmark.fidelity.features import extract_features, load_extractor, process_state

torch.set_num_threads(1)
root = Path(sys.argv[1])
state = process_state()
extractor = load_extractor("xrv", "all", image_size=32, device="cpu", xrv_cache_dir=root / "xrv")
result = extract_features(sorted((root / "images").glob("*.png")), extractor, cache_dir=root / "cache", batch_size=4)
np.save(root / f"features-{state.process_index}-of-{state.num_processes}.npy", result.features)
"""


def test_two_processes_split_the_extraction_and_both_get_the_pooled_features(tmp_path: Path) -> None:
    """``torchrun`` (what ``accelerate launch`` starts) with 2 CPU processes: each computes its share, and the
    gathered features equal a single process's."""
    extractor = random_xrv_extractor(tmp_path / "xrv")
    paths = write_images(tmp_path / "images", 13)
    single = extract_features(sorted(paths), extractor, use_cache=False).features
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(tmp_path / "worker.py"), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        gathered = np.load(tmp_path / f"features-{rank}-of-2.npy")
        np.testing.assert_allclose(gathered, single, rtol=1e-4, atol=1e-2)
    shards = sorted((tmp_path / "cache").glob("*/part-*.npz"))
    assert sorted(len(np.load(s)["keys"]) for s in shards) == [6, 7]
