"""Image loading for models: formats, modes and bit depths kept; every bad file named; all real images load."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.data import ImageLoadError, load_image, read_split_csv, scan_images
from tests.conftest import REPO_ROOT, shared_data, write_png


def test_8bit_greyscale_png_keeps_values_and_depth(tmp_path: Path) -> None:
    pixels = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    image = load_image(write_png(tmp_path / "a.png", pixels))
    assert image.bit_depth == 8 and image.max_value == 255
    assert image.pixels.dtype == np.uint8
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.to_float().max() == pytest.approx(1.0)


def test_16bit_png_keeps_true_depth_even_when_values_are_small(tmp_path: Path) -> None:
    pixels = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 50).astype(np.uint16)  # max 3150 of 65535
    path = tmp_path / "deep.png"
    Image.fromarray(pixels).save(path)  # Pillow writes uint16 arrays as a 16-bit greyscale PNG
    image = load_image(path)
    assert image.bit_depth == 16 and image.max_value == 65535
    assert image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.to_float().max() == pytest.approx(3150 / 65535)


def test_rgba_png_becomes_greyscale_and_drops_alpha(tmp_path: Path) -> None:
    rgba = np.zeros((10, 12, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = 7  # nearly transparent: alpha must not darken the X-ray
    image = load_image(write_png(tmp_path / "rgba.png", rgba, "RGBA"))
    assert image.mode == "RGBA" and image.bit_depth == 8
    assert image.pixels.shape == (10, 12)
    assert (image.pixels == 200).all()


def test_rgb_jpeg_loads_as_luma(tmp_path: Path) -> None:
    rgb = np.full((20, 30, 3), (255, 0, 0), dtype=np.uint8)
    path = tmp_path / "red.jpg"
    Image.fromarray(rgb).save(path, quality=95)
    image = load_image(path)
    assert image.pixels.shape == (20, 30)
    assert abs(int(image.pixels.mean()) - 76) <= 3  # ITU-R 601: 0.299 * 255


def test_non_square_shape_is_kept(tmp_path: Path) -> None:
    image = load_image(write_png(tmp_path / "wide.png", np.zeros((37, 91), dtype=np.uint8)))
    assert image.pixels.shape == (37, 91)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match=r"gone\.png: file not found"):
        load_image(tmp_path / "gone.png")


def test_zero_byte_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"zero\.png: file is empty \(0 bytes\)"):
        load_image(tmp_path / "zero.png")


def test_text_file_named_png_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("this is not an image\n")
    with pytest.raises(ImageLoadError, match=r"notes\.png: not an image file"):
        load_image(tmp_path / "notes.png")


def test_truncated_png_is_an_error_not_a_padded_image(tmp_path: Path) -> None:
    path = write_png(tmp_path / "cut.png", np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.png: unreadable or truncated image"):
        load_image(path)


def test_scan_reports_every_bad_file_in_row_order(tmp_path: Path) -> None:
    good = write_png(tmp_path / "good.png", np.zeros((8, 8), dtype=np.uint8))
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("x")
    problems = scan_images([tmp_path / "missing.png", good, tmp_path / "zero.png", tmp_path / "text.png"])
    assert [(p.row, p.path.name) for p in problems] == [(0, "missing.png"), (2, "zero.png"), (3, "text.png")]


def test_check_data_script_lists_all_bad_images_and_exits_1(split_dir: Path) -> None:
    (split_dir / "images" / "img1.png").unlink()
    (split_dir / "images" / "img4.png").write_bytes(b"")
    result = subprocess.run([str(REPO_ROOT / "scripts" / "check_data.sh"), str(split_dir / "split.csv")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "2 of 6 images cannot be used" in result.stderr
    assert "row 2 (line 3):" in result.stderr and "img1.png: file not found" in result.stderr
    assert "row 5 (line 6):" in result.stderr and "img4.png: file is empty" in result.stderr


def test_check_data_script_passes_a_clean_split(split_dir: Path) -> None:
    result = subprocess.run([str(REPO_ROOT / "scripts" / "check_data.sh"), str(split_dir / "split.csv")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "all 6 images load" in result.stdout


def test_all_real_images_in_shared_data_load() -> None:
    labels_csv = shared_data("cxr", "labels.csv")
    frame = pd.read_csv(labels_csv)
    assert len(frame) == 1439
    paths = [labels_csv.parent / p for p in frame["path"]]
    assert scan_images(paths) == []
    shapes = {load_image(p).pixels.shape for p in paths[::50]}
    assert all(max(s) <= 256 for s in shapes) and len(shapes) > 1  # non-square, varied sizes


def test_real_split_built_from_shared_labels_reads_back(tmp_path: Path) -> None:
    labels_csv = shared_data("cxr", "labels.csv")
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "make_splits.sh"), "csv", "--csv", str(labels_csv), "--image-col", "path",
         "--patient-col", "patient_id", "--label-cols", "Effusion=pleural effusion,Cardiomegaly=cardiomegaly,Mass",
         "--view-col", "view", "--missing-patient", "image", "--dataset", "mixed-public", "--allow-unknown-dataset",
         "--image-root", str(labels_csv.parent),
         "--out", str(tmp_path / "cxr.csv")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    table = read_split_csv(tmp_path / "cxr.csv")
    assert table.classes == ["pleural effusion", "cardiomegaly", "Mass"]
    assert len(table.frame) == 1439
    assert all(p.is_file() for p in table.image_paths())
