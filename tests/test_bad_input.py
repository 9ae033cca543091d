"""What bad input gets: a clear error naming the file, row and column, and nothing already written lost.

One behaviour per test, on real files on disk (the cases of the hostile-input review that ended in a silent wrong
result, a silent loss or a traceback).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.data import DataError
from benchmark.data.synthetic import read_synthetic_set, write_synthetic_set


def _synthetic_without_classes(folder: Path, labels: list[str]) -> Path:
    images = np.zeros((len(labels), 8, 8), dtype=np.uint8)
    rows = pd.DataFrame({"prompt": "x", "source_row": range(len(labels)), "seed": "", "mass": labels})
    write_synthetic_set(folder, images, rows, {"model": "m"})  # no "classes" in the manifest (SPEC §2 allows it)
    return folder


@pytest.mark.parametrize("value", ["yes", "-1", "2", "no"])
def test_a_synthetic_label_that_is_not_1_0_or_empty_stops_naming_file_row_and_column(tmp_path: Path,
                                                                                       value: str) -> None:
    folder = _synthetic_without_classes(tmp_path / "s", ["1", "0", value, ""])
    synthetic = read_synthetic_set(folder)  # nothing to check yet: the manifest names no class
    with pytest.raises(DataError, match=rf"synthetic\.csv: row 3 \(line 4\): label column 'mass' has value "
                                        rf"'{value}'"):
        synthetic.for_classes(["mass"]).labels()
    with pytest.raises(DataError, match="no label column 'effusion'"):
        synthetic.for_classes(["effusion"])


def test_valid_synthetic_labels_read_as_one_zero_and_unknown(tmp_path: Path) -> None:
    folder = _synthetic_without_classes(tmp_path / "s", ["1", "0", "1.0", ""])
    labels = read_synthetic_set(folder).for_classes(["mass"]).labels()[:, 0]
    np.testing.assert_array_equal(labels[:3], [1.0, 0.0, 1.0])
    assert np.isnan(labels[3])


def test_checking_a_sets_labels_skips_classes_without_a_column_and_stops_on_garbage(tmp_path: Path) -> None:
    synthetic = read_synthetic_set(_synthetic_without_classes(tmp_path / "s", ["1", "0", "", "0"]))
    synthetic.check_labels(["mass", "effusion"])  # effusion has no column: nothing to check
    bad = read_synthetic_set(_synthetic_without_classes(tmp_path / "t", ["1", "0", "2", "0"]))
    with pytest.raises(DataError, match=r"row 3 \(line 4\): label column 'mass' has value '2'"):
        bad.check_labels(["mass", "effusion"])


def test_the_image_quality_stage_refuses_a_bad_synthetic_label_even_without_per_class_rows(tmp_path: Path,
                                                                                          capsys) -> None:
    from benchmark.demo.phantoms import write_demo_dataset as write_phantoms
    from benchmark.fidelity.cli import main

    write_phantoms(tmp_path / "real", n_patients=10, images_per_patient=1, size=16, seed=0)
    images = np.zeros((6, 16, 16), dtype=np.uint8)
    rows = pd.DataFrame({"prompt": "x", "source_row": range(6), "seed": "", "normal": ["1", "0", "yes", "", "0", "1"]})
    write_synthetic_set(tmp_path / "set", images, rows, {"model": "m"})  # no "classes" in the manifest
    status = main(["--real", str(tmp_path / "real" / "split.csv"), "--synthetic", str(tmp_path / "set"),
                   "--results-dir", str(tmp_path / "results"), "--model-name", "m"])
    err = capsys.readouterr().err
    assert status == 2 and "row 3 (line 4): label column 'normal' has value 'yes'" in err, err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").glob("*.csv"))


# ------------------------------------------------------------------------------------------- the leakage guard


@pytest.mark.parametrize("spelling", ["PadChest", "pad chest", "PAD_CHEST", "BIMCV-PadChest", "Hospital San Juan"])
def test_the_leakage_guard_recognises_the_usual_spellings_of_a_dataset(spelling: str) -> None:
    from benchmark.data.leakage import LeakageError, check_leakage

    with pytest.raises(LeakageError, match="includes the split's dataset \\(padchest\\)"):
        check_leakage(spelling, "densenet121-res224-pc", ("padchest",))


@pytest.mark.parametrize("name", ["NIH ChestX-ray 14 (mine)", "St Elsewhere"])
def test_a_dataset_name_the_guard_does_not_know_stops_the_run_instead_of_passing_as_no_leakage(name: str) -> None:
    from benchmark.data.leakage import LeakageError, check_leakage

    with pytest.raises(LeakageError, match=r"not one the guard knows \(nih, padchest, .*--allow-leakage"):
        check_leakage(name, "densenet121-res224-nih", ("nih",))
    allowed = check_leakage(name, "densenet121-res224-nih", ("nih",), allow_leakage=True)
    assert allowed.status.startswith("allowed: the split's dataset") and allowed.status != "none"


def test_the_csv_split_builder_checks_dataset_against_the_same_list(tmp_path: Path) -> None:
    from benchmark.data.make_splits import main as make_splits_main

    source = tmp_path / "labels.csv"
    pd.DataFrame({"file": [f"{i}.png" for i in range(10)], "pid": [f"p{i}" for i in range(10)],
                  "Mass": ["1", "0"] * 5}).to_csv(source, index=False)
    base = ["csv", "--csv", str(source), "--image-col", "file", "--patient-col", "pid", "--label-cols", "Mass",
            "--out", str(tmp_path / "split.csv"), "--no-image-check"]
    assert make_splits_main([*base, "--dataset", "my hospital"]) == 2
    assert not (tmp_path / "split.csv").exists()
    assert make_splits_main([*base, "--dataset", "NIH_ChestX-ray14"]) == 0
    assert (pd.read_csv(tmp_path / "split.csv")["dataset"] == "nih").all()


# ------------------------------------------------------------------------------------------- registering folders


def test_every_format_the_loader_decodes_is_registered_and_other_files_stop_the_run_listed(tmp_path: Path,
                                                                                           capsys) -> None:
    from PIL import Image

    from benchmark.data.register_images import main as register_main

    images = tmp_path / "imgs"
    images.mkdir()
    pixels = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 3)
    for suffix in ("png", "tif", "bmp", "webp", "jpg"):
        Image.fromarray(pixels).save(images / f"a.{suffix}")
    (images / "scan.dcm").write_bytes(b"DICM not a real dicom")
    (images / "notes.txt").write_text("hello")
    out = tmp_path / "set"
    assert register_main(["--images", str(images), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "2 file(s) are not images the loader can decode" in err and "scan.dcm" in err and "notes.txt" in err
    assert not out.exists()
    assert register_main(["--images", str(images), "--out", str(out), "--skip-unreadable"]) == 0
    captured = capsys.readouterr()
    assert "registered 5 images" in captured.out and "scan.dcm" in captured.err  # still listed
    assert sorted(read_synthetic_set(out).frame["img_savename"]) == [f"images/a.{s}" for s in
                                                                      ("bmp", "jpg", "png", "tif", "webp")]


# ------------------------------------------------------------------------------------------------- split CSVs


def _split_frame(paths: list[str], patients: list[str], splits: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"image_path": paths, "patient_id": patients, "split": splits, "prompt": "x",
                         "class_label": "", "mass": "1", "dataset": "nih"})


def test_one_image_under_two_spellings_is_refused(tmp_path: Path) -> None:
    from benchmark.data import read_split_csv

    _split_frame(["dir/x.png", "dir/./x.png"], ["a", "b"], ["train", "test"]).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(DataError, match=r"image 'dir/x.png' \(also written 'dir/./x.png'\) is listed twice"):
        read_split_csv(tmp_path / "s.csv")
    absolute = str(tmp_path / "dir" / "x.png")
    _split_frame(["dir/x.png", absolute], ["a", "b"], ["train", "test"]).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match="is listed twice, in row 1"):
        read_split_csv(tmp_path / "t.csv")


def test_a_patient_id_with_surrounding_spaces_is_the_same_patient(tmp_path: Path) -> None:
    from benchmark.data import read_split_csv

    _split_frame(["a.png", "b.png"], ["p1", " p1 "], ["train", "test"]).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(DataError, match="patient 'p1' appears in more than one split"):
        read_split_csv(tmp_path / "s.csv")
    _split_frame(["a.png", "b.png"], ["p1", "P1"], ["train", "test"]).to_csv(tmp_path / "c.csv", index=False)
    assert len(read_split_csv(tmp_path / "c.csv").frame) == 2  # ids are case-sensitive


# ------------------------------------------------------------------------------------------------- images


def test_an_image_over_the_pixel_limit_is_named_and_the_others_are_still_listed(tmp_path: Path, capsys) -> None:
    from PIL import Image

    from benchmark.data.check_data import main as check_main

    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "big.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "empty.png").write_bytes(b"")
    _split_frame(["big.png", "small.png", "empty.png"], ["a", "b", "c"], ["train", "val", "test"]).to_csv(
        tmp_path / "s.csv", index=False)
    limit = Image.MAX_IMAGE_PIXELS
    try:
        assert check_main([str(tmp_path / "s.csv"), "--max-image-pixels", "1000"]) == 1
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    err = capsys.readouterr().err
    assert "2 of 3 images cannot be used" in err and "big.png: larger than the image-size limit of 1,000" in err
    assert "empty.png: file is empty" in err and "Traceback" not in err


def test_an_unreadable_image_in_a_dataloader_worker_arrives_as_the_same_clear_error(tmp_path: Path) -> None:
    from PIL import Image

    from benchmark.data import ImageLoadError
    from benchmark.models.scoring import score_images

    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    paths = [tmp_path / "ok.png", tmp_path / "bad.png"]
    messages = []
    for workers in (0, 2):
        with pytest.raises(ImageLoadError) as caught:
            score_images(lambda batch: batch.mean(dim=(2, 3)), paths, 16, batch_size=1, num_workers=workers)
        messages.append(str(caught.value))
    assert messages[0] == messages[1] == f"{tmp_path / 'bad.png'}: not an image file (unrecognised format)"


# ------------------------------------------------------------------------------------------------ results store


def test_an_unwritable_results_folder_or_corrupt_csv_is_found_before_any_work(tmp_path: Path) -> None:
    from benchmark.core.results import ResultsFileError, check_writable

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ResultsFileError, match=r"results folder .*a-file/results cannot be written"):
        check_writable("utility_pretrained", blocker / "results")
    (tmp_path / "r").mkdir()
    corrupt = tmp_path / "r" / "image_quality_metrics.csv"
    corrupt.write_text("model_name,extra_info\nx\n")
    with pytest.raises(ResultsFileError, match="line 2 has 1 fields, the header has 2"):
        check_writable("image_quality_metrics", tmp_path / "r")
    assert corrupt.read_text() == "model_name,extra_info\nx\n"


def test_the_image_quality_stage_stops_on_a_corrupt_results_csv_before_extracting_features(tmp_path: Path,
                                                                                           capsys) -> None:
    from benchmark.fidelity.cli import main as iq_main

    results = tmp_path / "results"
    results.mkdir()
    (results / "image_quality_metrics.csv").write_text("oops\n1,2\n")
    split = tmp_path / "s.csv"
    _split_frame(["missing.png"], ["a"], ["test"]).to_csv(split, index=False)
    assert iq_main(["--real", str(split), "--synthetic", str(tmp_path / "none"), "--results-dir", str(results)]) == 2
    assert "image_quality_metrics.csv is unreadable or corrupt" in capsys.readouterr().err


def test_a_failed_shared_write_keeps_the_runs_own_copy_and_says_where(tmp_path: Path, monkeypatch) -> None:
    from benchmark.core import results as store

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "upsert_rows", full_disk)
    rows = pd.DataFrame({"model_name": ["m"], "extra_info": [""], "classifier": ["c"], "image_source": ["real"],
                         "class": ["mass"], "auroc": [0.8]})
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    with pytest.raises(store.ResultsFileError,
                       match=r"(?s)No space left on device.*rows are safe in .*r1/metrics\.csv"):
        store.write_run_rows("utility_pretrained", rows, run, results_dir=tmp_path)
    assert pd.read_csv(run / "metrics.csv")["auroc"].tolist() == [0.8]


def test_a_key_duplicated_by_hand_is_refused_naming_both_lines(tmp_path: Path) -> None:
    from benchmark.core.results import ResultsFileError, read_results, upsert_rows

    upsert_rows("image_quality_metrics", [{"model_name": "a", "extra_info": "", "feature_extractor": "x",
                                           "class": "overall", "fid": 1.0}], results_dir=tmp_path)
    path = tmp_path / "image_quality_metrics.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(ResultsFileError, match="rows on lines 2 and 3 share the key"):
        read_results("image_quality_metrics", tmp_path)
    with pytest.raises(ResultsFileError, match="rows on lines 2 and 3 share the key"):
        upsert_rows("image_quality_metrics", [{"model_name": "b", "extra_info": "", "feature_extractor": "x",
                                               "class": "overall"}], results_dir=tmp_path)


def test_temp_files_of_killed_writers_are_removed_on_the_next_write(tmp_path: Path) -> None:
    import os
    import time

    from benchmark.core.results import upsert_rows

    row = {"model_name": "a", "extra_info": "", "feature_extractor": "x", "class": "overall"}
    upsert_rows("image_quality_metrics", [row], results_dir=tmp_path)
    stale, fresh = tmp_path / ".image_quality_metrics.csv.abc.tmp", tmp_path / ".image_quality_metrics.csv.def.tmp"
    stale.write_text("half")
    fresh.write_text("another writer, now")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    upsert_rows("image_quality_metrics", [row], results_dir=tmp_path)
    assert not stale.exists() and fresh.exists()


@pytest.mark.parametrize(("flag", "value"), [("--n", "0"), ("--k", "0"), ("--kid-subsets", "0")])
def test_image_quality_options_out_of_range_are_clear_errors(tmp_path: Path, capsys, flag: str, value: str) -> None:
    from benchmark.fidelity.cli import main as iq_main

    assert iq_main(["--real", str(tmp_path / "s.csv"), "--synthetic", str(tmp_path), "--results-dir",
                    str(tmp_path / "r"), flag, value]) == 2
    err = capsys.readouterr().err
    assert f"{flag} {value}: use at least" in err and "Traceback" not in err


def test_a_pipeline_folder_with_a_missing_weights_file_is_a_clear_error(tmp_path: Path, capsys) -> None:
    from benchmark.demo.models import build_class_conditional
    from benchmark.generation.generate import main as generate_main

    model = build_class_conditional(tmp_path / "cc", num_classes=2, image_size=8)
    for weights in (model / "unet").glob("diffusion_pytorch_model.*"):
        weights.unlink()
    pd.DataFrame({"prompt": ["a"], "class_label": ["0"]}).to_csv(tmp_path / "p.csv", index=False)
    assert generate_main(["--model", str(model), "--prompts", str(tmp_path / "p.csv"), "--out",
                          str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"model '{model}': cannot load its weights" in err and "Traceback" not in err


def test_images_smaller_than_the_network_input_are_counted_in_a_note(tmp_path: Path) -> None:
    from PIL import Image

    from benchmark.data import undersized_note

    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "dot.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "ok.png")
    note = undersized_note([tmp_path / "ok.png", tmp_path / "dot.png"], 32, "synthetic")
    assert note.startswith("1 synthetic image(s) smaller than the network's 32 px input") and "1x1" in note
    assert undersized_note([tmp_path / "ok.png"], 32, "synthetic") == ""
