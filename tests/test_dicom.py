"""DICOM real images: the modality and VOI LUTs applied, MONOCHROME1 inverted, scaled to 16 bits; a bad DICOM is
named like any other bad file. The files are written here with pydicom (a 12-bit ramp, as CR / DX exports store
them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from benchmark.core.errors import ImageLoadError
from benchmark.data import load_image
from benchmark.data.check_data import main as check_data
from benchmark.data.preprocess import xrv_input
from tests.conftest import write_png

RAMP = (np.arange(32 * 40, dtype=np.uint16).reshape(32, 40) * 3) % 4096  # 12-bit stored values


def write_dicom(path: Path, stored: np.ndarray = RAMP, *, photometric: str = "MONOCHROME2", slope: float = 1.0,
                intercept: float = 0.0, window: tuple[float, float] | None = None) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray, for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "DX", "p10000001"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = stored.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    dcmwrite(path, ds, enforce_file_format=True)
    return path


def _scaled(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    return np.round((values - values.min()) / (values.max() - values.min()) * 65535).astype(np.uint16)


def test_monochrome2_is_read_through_its_rescale_as_16_bits_from_its_own_range(tmp_path: Path) -> None:
    image = load_image(write_dicom(tmp_path / "a.dcm", slope=2.0, intercept=-1024.0))
    assert image.bit_depth == 16 and image.pixels.dtype == np.uint16 and image.pixels.shape == RAMP.shape
    assert image.mode == "DICOM MONOCHROME2"
    np.testing.assert_array_equal(image.pixels, _scaled(2.0 * RAMP - 1024.0))


def test_monochrome1_is_inverted_so_that_dense_tissue_is_bright(tmp_path: Path) -> None:
    normal = load_image(write_dicom(tmp_path / "m2.dcm"))
    inverted = load_image(write_dicom(tmp_path / "m1.dcm", photometric="MONOCHROME1"))
    np.testing.assert_array_equal(inverted.pixels.astype(np.int64), 65535 - normal.pixels.astype(np.int64))
    assert inverted.pixels.flat[RAMP.argmin()] == 65535


def test_the_window_clips_what_lies_outside_it(tmp_path: Path) -> None:
    image = load_image(write_dicom(tmp_path / "w.dcm", window=(2048.0, 1024.0)))
    below, above = RAMP < 1400, RAMP > 2700
    assert set(np.unique(image.pixels[below])) == {0} and set(np.unique(image.pixels[above])) == {65535}
    inside = (RAMP > 1700) & (RAMP < 2400)
    assert 0 < image.pixels[inside].min() < image.pixels[inside].max() < 65535


def test_a_dicom_without_a_suffix_is_found_by_its_preamble_and_feeds_the_network_like_the_same_png(
        tmp_path: Path) -> None:
    plain = write_dicom(tmp_path / "a.dcm")
    bare = tmp_path / "IM0001"
    bare.write_bytes(plain.read_bytes())
    png = write_png(tmp_path / "a.png", _scaled(RAMP))
    from_dicom, from_png = xrv_input(load_image(bare), 32), xrv_input(load_image(png), 32)
    np.testing.assert_array_equal(from_dicom, from_png)


def test_check_data_names_a_truncated_dicom_beside_the_good_ones(tmp_path: Path, capsys) -> None:
    good = [write_dicom(tmp_path / "img" / f"{i}.dcm") for i in range(3)]
    bad = tmp_path / "img" / "broken.dcm"
    bad.write_bytes(good[0].read_bytes()[:400])  # header kept, pixel data cut
    pd.DataFrame({"image_path": [f"img/{p.name}" for p in [*good, bad]], "patient_id": ["a", "b", "c", "d"],
                  "split": ["train", "train", "test", "test"], "prompt": "", "class_label": "",
                  "mass": [1, 0, 1, 0]}).to_csv(tmp_path / "split.csv", index=False)
    assert check_data([str(tmp_path / "split.csv")]) == 1
    report = capsys.readouterr().err
    assert "broken.dcm" in report and "1 of 4" in report.replace(",", "")
    assert not any(f"{p.name}:" in report for p in good)
    with pytest.raises(ImageLoadError, match=r"broken\.dcm"):
        load_image(bad)
