"""Patient re-identification (``benchmark.privacy.reid``) and its stage (``python -m benchmark.privacy.cli``).

Real data: the phantom demo split (80 patients, 3 images each, 32 px; a phantom patient keeps its anatomy across
images, so re-identification is learnable). Synthetic set: 30 phantoms of new patients plus exact copies of 12
training images. The re-id model is a small ResNet variant trained for a few epochs on one CPU thread.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from benchmark.core.results import read_results
from benchmark.core.stats import wilson_interval
from benchmark.data import DataError, read_split_csv
from benchmark.data.synthetic import read_synthetic_set
from benchmark.demo.phantoms import FINDINGS, make_phantom_images, write_demo_dataset
from benchmark.privacy.cli import main, synthetic_sources
from benchmark.privacy.reid import (
    SiameseReID,
    best_matches,
    embed_images,
    load_reid_model,
    mean_interval,
    resolve_image_size,
    save_reid_model,
    share_above,
    verification_pairs,
    verify,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
COPIED = tuple(range(0, 36, 3))  # train rows (positions among the split's train rows) planted as copies
TRAIN = ["--reid-train", "--reid-arch", "resnet10", "--reid-image-size", "32", "--reid-features", "32",
         "--reid-epochs", "8", "--reid-lr", "1e-3", "--cpu-threads", "1", "--bootstrap", "200", "--device", "cpu"]


def _write_set(folder: Path, images: np.ndarray, frame: pd.DataFrame,
               copies: list[tuple[Path, pd.Series, int]]) -> Path:
    """New phantoms without a source row (as a registered folder has them), then ``copies``: (image file, its split
    row, that row's number in split.csv), each recorded as made from that row."""
    (folder / "images").mkdir(parents=True)
    rows = []
    for i, (image, finding) in enumerate(zip(images, frame["finding"], strict=True)):
        Image.fromarray(image).save(folder / "images" / f"{i:03d}.png")
        rows.append({"prompt": f"PA chest x-ray showing {finding}", "img_savename": f"images/{i:03d}.png",
                     "source_row": "", "seed": 0, "class_label": FINDINGS.index(finding),
                     **{name: int(name == finding) for name in FINDINGS}})
    for k, (path, source, split_row) in enumerate(copies):
        name = f"images/copy{k}.png"
        (folder / name).write_bytes(path.read_bytes())
        rows.append({"prompt": source["prompt"], "img_savename": name, "source_row": split_row, "seed": 0,
                     "class_label": source["class_label"], **{c: source[c] for c in FINDINGS}})
    pd.DataFrame(rows).to_csv(folder / "synthetic.csv", index=False)
    (folder / "manifest.json").write_text(json.dumps({"model": "phantom-copier", "classes": list(FINDINGS)}))
    return folder


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("privacy")
    split = write_demo_dataset(root / "demo", n_patients=80, images_per_patient=3, size=32, seed=0)
    train_rows = np.flatnonzero(split["split"].to_numpy() == "train")
    images, frame = make_phantom_images(30, 1, 32, seed=5, patient_offset=500)
    copies = [(root / "demo" / split.loc[train_rows[r], "image_path"], split.loc[train_rows[r]], int(train_rows[r]))
              for r in COPIED]
    synthetic = _write_set(root / "synthetic", images, frame, copies)
    return {"root": root, "split": root / "demo" / "split.csv", "synthetic": synthetic}


@pytest.fixture(scope="module")
def trained(stage: dict[str, Path]) -> dict[str, object]:
    results = stage["root"] / "results-trained"
    rc = main(["--real", str(stage["split"]), "--synthetic", str(stage["synthetic"]), "--results-dir", str(results),
               *TRAIN])
    assert rc == 0
    return {"results": results, "rows": read_results("privacy_metrics", results)}


def test_a_chexgenbench_resnet50_state_dict_loads_with_its_wrapping_and_prefix(tmp_path: Path) -> None:
    torch.manual_seed(0)
    original = SiameseReID("resnet50", 128, "unit").eval()
    path = tmp_path / "reid.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in original.state_dict().items()}}, path)
    loaded = load_reid_model(path)
    assert loaded.n_features == 128 and "model.fc.weight" in loaded.state_dict()
    x = torch.rand(2, 1, 32, 32) * 2048 - 1024
    np.testing.assert_allclose(embed_images(loaded, x, device="cpu"), embed_images(original, x, device="cpu"),
                               rtol=1e-5, atol=1e-6)


def test_a_checkpoint_without_a_sidecar_is_fed_as_chexgenbench_fed_it_unit_range_rgb_without_normalisation(
        tmp_path: Path) -> None:
    from torchvision import models

    torch.manual_seed(1)
    path = tmp_path / "ResNet-50_epoch11_data_handling_RPN.pth"
    torch.save(SiameseReID("resnet50", 128).state_dict(), path)  # CheXGenBench: torch.save(model.state_dict())
    reference = models.resnet50(weights=None)
    reference.fc = torch.nn.Linear(2048, 128)
    state = torch.load(path, weights_only=True)
    reference.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    reference.eval()
    pixels = torch.randint(0, 256, (2, 1, 32, 32)).float()
    xrv_range = pixels / 255.0 * 2048.0 - 1024.0  # what load_tensors gives for these 8-bit pixels
    with torch.no_grad():  # CheXGenBench: ToTensor() of the RGB image, i.e. pixels / 255 in 3 equal channels
        expected = torch.sigmoid(reference((pixels / 255.0).repeat(1, 3, 1, 1))).numpy()
    loaded = load_reid_model(path)
    assert (loaded.input_scaling, loaded.image_size) == ("unit", 224)  # their transforms.Resize((224, 224))
    np.testing.assert_allclose(embed_images(loaded, xrv_range, device="cpu"), expected, rtol=1e-4, atol=1e-5)
    imagenet = load_reid_model(path, input_scaling="imagenet")
    assert np.abs(embed_images(imagenet, xrv_range, device="cpu") - expected).max() > 1e-3


def test_a_saved_model_keeps_its_backbone_and_input_scaling_in_a_sidecar_config(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = SiameseReID("resnet10", 8, "imagenet").eval()
    path = save_reid_model(model, tmp_path / "reid_model.pt")
    assert json.loads((tmp_path / "reid_model.json").read_text())["input_scaling"] == "imagenet"
    loaded = load_reid_model(path)
    assert (loaded.arch, loaded.n_features, loaded.input_scaling) == ("resnet10", 8, "imagenet")
    x = torch.rand(3, 1, 32, 32) * 2048 - 1024
    np.testing.assert_allclose(embed_images(loaded, x, device="cpu"), embed_images(model, x, device="cpu"),
                               rtol=1e-5, atol=1e-6)


def test_the_image_size_comes_from_the_sidecar_and_only_a_checkpoint_without_one_takes_another_freely(
        tmp_path: Path) -> None:
    model = SiameseReID("resnet10", 8, "imagenet", image_size=32)
    model.image_size_source = "trained here"
    path = save_reid_model(model, tmp_path / "reid_model.pt")
    loaded = load_reid_model(path)
    assert resolve_image_size(loaded, None, checkpoint=path)[:2] == (32, f"sidecar {tmp_path / 'reid_model.json'}")
    assert resolve_image_size(loaded, 32, checkpoint=path)[2] is None
    with pytest.raises(DataError, match=r"reid_model\.pt: trained at 32 px .* --reid-image-size 224 was given"):
        resolve_image_size(loaded, 224, checkpoint=path)
    size, _, warning = resolve_image_size(loaded, 224, allow_mismatch=True, checkpoint=path)
    assert size == 224 and warning.startswith("WARNING")
    # CheXGenBench's checkpoint (no sidecar): 224 unless told otherwise, which the row notes
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    bare = load_reid_model(plain, arch="resnet10")
    assert resolve_image_size(bare, None, checkpoint=plain)[:2] == (224, "no sidecar: CheXGenBench's "
                                                                          "Resize((224, 224))")
    size, _, note = resolve_image_size(bare, 64, checkpoint=plain)
    assert size == 64 and "no sidecar config records its image size" in note
    # a sidecar of the first format, which did not record the size: the default, with a warning
    (tmp_path / "plain.json").write_text(json.dumps({"format": "synthcxr-reid/1", "arch": "resnet10",
                                                     "n_features": 8, "input_scaling": "imagenet"}))
    old = load_reid_model(plain)
    size, source, note = resolve_image_size(old, None, checkpoint=plain)
    assert (old.image_size, size) == (None, 224) and "not recorded" in source and "not recorded" in note


def test_a_checkpoint_with_other_keys_stops_with_its_name_and_the_expected_keys(tmp_path: Path) -> None:
    path = tmp_path / "classifier.pt"
    torch.save({"features.conv0.weight": torch.zeros(1), "classifier.weight": torch.zeros(1, 2)}, path)
    with pytest.raises(DataError, match=r"classifier\.pt.*fc_end\.weight.*model\.conv1\.weight"):
        load_reid_model(path)
    wrong_backbone = tmp_path / "resnet18.pt"
    torch.save(SiameseReID("resnet18", 16).state_dict(), wrong_backbone)
    with pytest.raises(DataError, match=r"resnet18\.pt: not a resnet50 re-identification checkpoint: missing keys"):
        load_reid_model(wrong_backbone)


def test_each_query_is_matched_to_its_nearest_training_embedding_and_scored_by_the_network() -> None:
    torch.manual_seed(0)
    model = SiameseReID("resnet10", 8).eval()
    rng = np.random.default_rng(0)
    query, ref = rng.random((37, 8), np.float32), rng.random((53, 8), np.float32)
    groups_q, groups_r = rng.integers(0, 5, 37), rng.integers(0, 5, 53)
    prob, idx = best_matches(model, query, ref, query_groups=groups_q, ref_groups=groups_r, device="cpu",
                             query_chunk=7, ref_chunk=11)
    dist = ((query[:, None, :] - ref[None, :, :]) ** 2).sum(-1)
    dist[groups_q[:, None] == groups_r[None, :]] = np.inf
    np.testing.assert_array_equal(idx, dist.argmin(1))
    with torch.no_grad():
        expected = torch.sigmoid(model.fc_end(torch.from_numpy(np.abs(query - ref[idx]))))[:, 0].numpy()
    np.testing.assert_allclose(prob, expected, rtol=1e-6)


def test_verification_pairs_hold_every_same_patient_pair_and_only_different_patients_as_negatives() -> None:
    patients = ["a", "a", "a", "b", "c", "c"]
    i, j, same = verification_pairs(patients, min_negatives=20, seed=0)
    ids = np.asarray(patients)
    assert sorted(zip(i[same], j[same], strict=True)) == [(0, 1), (0, 2), (1, 2), (4, 5)]
    assert (ids[i[~same]] != ids[j[~same]]).all() and (~same).sum() == 15 - 4
    with pytest.raises(ValueError, match="two or more images"):
        verification_pairs(["a", "b", "c"])


def test_a_model_that_sees_patient_identity_verifies_perfectly_and_its_threshold_keeps_the_false_match_rate() -> None:
    model = SiameseReID("resnet10", 4)
    with torch.no_grad():
        model.fc_end.weight.fill_(-10.0)
        model.fc_end.bias.fill_(5.0)
    patients = np.repeat(np.arange(30), 2)
    embeddings = np.eye(4, dtype=np.float32)[patients % 4] * 0.5 + (patients[:, None] / 60.0)
    result = verify(model, embeddings.astype(np.float32), patients, fmr=0.05)
    assert result.auroc == 1.0 and result.tmr_at_fmr == 1.0


def test_the_trained_model_reports_its_held_out_verification_auroc_well_above_chance(trained) -> None:
    overall = trained["rows"][trained["rows"]["class"] == "overall"].iloc[0]
    # verification AUROC on the held-out val patients with this recipe: 0.97 / 0.94 / 0.92 over seeds 0-2
    # (0.71-0.87 on other held-out patients with 40 training patients); 0.75 leaves a wide margin
    assert float(overall["reid_val_auroc"]) > 0.75
    assert float(overall["reid_val_auroc_ci_low"]) > 0.5
    assert int(overall["reid_val_n_positive"]) > 0 and int(overall["reid_val_n_negative"]) > 0
    assert overall["reid_model"] == "trained:resnet10-32px-seed0" and Path(overall["reid_checkpoint"]).is_file()


def test_copied_training_images_are_re_identified_far_above_the_held_out_chance_level(trained) -> None:
    rows = trained["rows"].set_index("class")
    overall = rows.loc["overall"]
    for column in ("reid_mean", "reid_share_above", "real_reid_share_above"):
        assert float(overall[f"{column}_ci_low"]) <= float(overall[column]) <= float(overall[f"{column}_ci_high"])
    # copies get the model's highest probability (monotone fc_end), so they lift the max and the share above the
    # threshold above the held-out real images' (chance) share: seeds 0-2 gave 0.38 / 0.45 / 0.50 against
    # 0.13 / 0.10 / 0.27 (val AUROC 0.97 / 0.94 / 0.92); the CIs overlap at seed 2, so only the point values are
    # compared here and the copies are checked one by one below
    assert float(overall["reid_max"]) > float(overall["real_reid_max"])
    assert float(overall["reid_share_above"]) > float(overall["real_reid_share_above"]) + 0.1
    folder = Path(overall["report_dir"])
    scores = pd.read_csv(folder / "reid_scores.csv")
    copies = scores["synthetic_path"].str.contains("copy")
    # each copy's best match is the very training image it copies
    assert (scores.loc[copies, "reid_nn_path"].map(lambda p: Path(p).read_bytes()).tolist()
            == scores.loc[copies, "synthetic_path"].map(lambda p: Path(p).read_bytes()).tolist())
    assert scores.loc[copies, "reid_above"].all()
    assert scores.loc[copies, "reid_score"].min() >= scores.loc[~copies, "reid_score"].max()
    assert (folder / "reid_closest.png").is_file()
    assert set(rows.index) <= {"overall", *FINDINGS} and len(rows) >= 3
    assert int(overall["reid_n_synthetic"]) == 42 and int(overall["reid_n_real"]) > 0


def test_the_leaderboard_shows_the_re_identified_share_with_its_interval_beside_chance(trained,
                                                                                     tmp_path: Path) -> None:
    from benchmark.report import build_report

    overall = trained["rows"].set_index("class").loc["overall"]
    report = build_report(trained["results"], tmp_path / "report")
    board = report.leaderboard.set_index("model")
    model = overall["model_name"]
    for column, source in (("re-identified share", "reid_share_above"),
                           ("re-identified share, chance", "real_reid_share_above")):
        assert board.loc[model, column] == pytest.approx(float(overall[source]))
        assert board.loc[model, f"{column} ci_low"] == pytest.approx(float(overall[f"{source}_ci_low"]))
        assert board.loc[model, f"{column} ci_high"] == pytest.approx(float(overall[f"{source}_ci_high"]))
    markdown = report.markdown.read_text().split("## Leaderboard", 1)[1]
    assert (f"{float(overall['reid_share_above']):.3f} [{float(overall['reid_share_above_ci_low']):.3f}, "
            f"{float(overall['reid_share_above_ci_high']):.3f}]") in markdown


def test_copies_made_from_train_rows_are_re_identified_against_their_source_far_above_the_within_set_null(
        trained) -> None:
    # CheXGenBench's prompt-matched design: the 12 copies name their source row, the 30 new phantoms none
    overall = trained["rows"].set_index("class").loc["overall"]
    assert overall["reid_design"] == "screen+matched"
    assert "30 of 42 synthetic images have no source among the train rows" in overall["notes"]
    assert (overall["matched_n_synthetic"], overall["matched_n_source_patients"]) == ("12", "12")
    assert overall["matched_reference"] == "source image"
    assert (overall["matched_reid_count_above"], float(overall["matched_reid_share_above"])) == ("12", 1.0)
    assert float(overall["matched_reid_max"]) == pytest.approx(float(overall["matched_reid_mean"]))  # all copies
    # the same 12 images against another train patient with the same labels: 0 of 12 above the threshold here
    assert float(overall["matched_null_reid_share_above"]) < 0.3
    assert float(overall["matched_share_difference_ci_low"]) > 0.5
    # 12 source patients, each copy above and its null below: the exact sign-flip p-value is 2**-12 = 0.00024
    assert float(overall["matched_p_value"]) < 0.001 and "sign-flip" in overall["matched_test"]
    scores = pd.read_csv(Path(overall["report_dir"]) / "matched_scores.csv")
    assert len(scores) == 12 and scores["matched_above"].all()
    assert (scores["matched_paths"].map(lambda p: Path(p).read_bytes()).tolist()
            == scores["synthetic_path"].map(lambda p: Path(p).read_bytes()).tolist())  # the source image itself
    assert (scores["null_patient"] != scores["source_patient"]).all() and (scores["null_match"] == "same labels").all()
    assert all(Path(p).stem.split("_")[0] == q for p, q in zip(scores["null_paths"], scores["null_patient"],
                                                                strict=True))


def test_a_source_row_whose_patient_differs_from_the_one_synthetic_csv_names_stops_naming_the_row(
        stage, tmp_path: Path) -> None:
    folder = tmp_path / "set"
    shutil.copytree(stage["synthetic"], folder)
    rows = pd.read_csv(folder / "synthetic.csv", dtype=str, keep_default_na=False)
    split = read_split_csv(stage["split"])
    sourced = rows["source_row"] != ""
    rows["patient_id"] = ""
    rows.loc[sourced, "patient_id"] = [split.frame["patient_id"].iat[int(r)] for r in rows.loc[sourced, "source_row"]]
    rows.to_csv(folder / "synthetic.csv", index=False)
    sources = synthetic_sources(split, read_synthetic_set(folder))
    assert sources.n_train_sourced == 12 and (sources.train_position >= 0).sum() == 12
    last = int(np.flatnonzero(sourced)[-1])
    rows.loc[last, "patient_id"] = "someone-else"
    rows.to_csv(folder / "synthetic.csv", index=False)
    with pytest.raises(DataError, match=rf"synthetic\.csv: row {last + 1}: patient_id 'someone-else', but its "
                                        r"source_row \d+ is patient_id 'demo-p\d+'"):
        synthetic_sources(split, read_synthetic_set(folder))


def test_the_saved_trained_model_reloads_at_the_size_it_was_trained_at_and_gives_the_same_scores(
        stage, trained, tmp_path: Path) -> None:
    # issue 24: a model trained at 32 px was reloaded at 224 px (the sidecar did not record the size)
    overall = trained["rows"][trained["rows"]["class"] == "overall"].iloc[0]
    checkpoint = overall["reid_checkpoint"]
    side = json.loads(Path(checkpoint).with_suffix(".json").read_text())
    assert side["preprocessing"]["image_size"] == 32 and side["preprocessing"]["channels"] == 3
    assert side["preprocessing"]["input_scaling"] == "imagenet" and "load_tensors" in side["preprocessing"]["loader"]
    rc = main(["--real", str(stage["split"]), "--synthetic", str(stage["synthetic"]), "--results-dir",
               str(tmp_path), "--reid-model", checkpoint, "--bootstrap", "200", "--device", "cpu"])  # no size given
    assert rc == 0
    again = read_results("privacy_metrics", tmp_path).set_index("class").loc["overall"]
    assert (again["reid_arch"], again["reid_input_scaling"], again["reid_image_size"]) == ("resnet10", "imagenet", "32")
    assert again["reid_image_size_source"].startswith("sidecar") and again["reid_model"] == str(Path(checkpoint))
    for column in ("reid_mean", "reid_max", "reid_share_above", "reid_threshold", "reid_val_auroc",
                   "matched_reid_mean", "matched_reid_threshold", "matched_null_reid_mean", "matched_p_value"):
        assert float(again[column]) == pytest.approx(float(overall[column]), abs=1e-6), column
    before = pd.read_csv(Path(overall["report_dir"]) / "reid_scores.csv")
    after = pd.read_csv(Path(again["report_dir"]) / "reid_scores.csv")
    np.testing.assert_allclose(after["reid_score"], before["reid_score"], rtol=0, atol=1e-6)


def test_a_checkpoint_fed_another_size_than_it_was_trained_at_is_refused_unless_allowed_then_flagged(
        stage, trained, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    checkpoint = trained["rows"]["reid_checkpoint"].iloc[0]
    common = ["--real", str(stage["split"]), "--synthetic", str(stage["synthetic"]), "--reid-model", checkpoint,
              "--reid-image-size", "48", "--bootstrap", "200", "--device", "cpu", "--no-per-class"]
    rc = main([*common, "--results-dir", str(tmp_path / "refused")])
    assert rc == 2 and not (tmp_path / "refused" / "privacy_metrics.csv").exists()
    assert f"{checkpoint}: trained at 32 px" in capsys.readouterr().err  # names the checkpoint and both sizes
    rc = main([*common, "--results-dir", str(tmp_path / "allowed"), "--reid-allow-size-mismatch"])
    assert rc == 0
    row = read_results("privacy_metrics", tmp_path / "allowed").iloc[0]
    assert (row["reid_image_size"], row["reid_trained_image_size"]) == ("48", "32")
    assert row["reid_model"].endswith("@48px")  # its own key: it never replaces the row of a run at 32 px
    assert "WARNING" in row["notes"] and "trained at 32 px" in row["notes"]


def test_a_split_without_a_patient_with_two_images_stops_naming_the_file_and_keeps_results(
        stage, trained, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    split = pd.read_csv(stage["split"], dtype=str, keep_default_na=False)
    single = split.drop_duplicates("patient_id").copy()
    single["image_path"] = [str(stage["split"].parent / p) for p in single["image_path"]]
    path = tmp_path / "one_image_each.csv"
    single.to_csv(path, index=False)
    results = trained["results"] / "privacy_metrics.csv"
    before = results.read_bytes()
    rc = main(["--real", str(path), "--synthetic", str(stage["synthetic"]), "--results-dir",
               str(trained["results"]), *TRAIN])
    assert rc == 2
    assert f"{path}: no train patient has two or more images" in capsys.readouterr().err
    assert results.read_bytes() == before


def test_a_bad_checkpoint_given_to_the_stage_stops_and_existing_results_stay(stage, trained, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "not_reid.pt"
    torch.save({"weight": torch.zeros(3)}, bad)
    results = trained["results"] / "privacy_metrics.csv"
    before = results.read_bytes()
    rc = main(["--real", str(stage["split"]), "--synthetic", str(stage["synthetic"]), "--results-dir",
               str(trained["results"]), "--reid-model", str(bad)])
    assert rc == 2 and str(bad) in capsys.readouterr().err
    assert results.read_bytes() == before


def test_a_synthetic_set_without_label_columns_gets_its_overall_row_only(stage, trained, tmp_path: Path) -> None:
    folder = tmp_path / "flat"
    images, frame = make_phantom_images(6, 1, 32, seed=9, patient_offset=900)
    _write_set(folder, images, frame, [])
    rows = pd.read_csv(folder / "synthetic.csv")
    rows[["prompt", "img_savename", "source_row", "seed"]].to_csv(folder / "synthetic.csv", index=False)
    (folder / "manifest.json").write_text(json.dumps({"model": "flat"}))
    checkpoint = trained["rows"]["reid_checkpoint"].iloc[0]
    rc = main(["--real", str(stage["split"]), "--synthetic", str(folder), "--results-dir", str(tmp_path / "r"),
               "--reid-model", checkpoint, "--reid-arch", "resnet10", "--reid-image-size", "32", "--device", "cpu"])
    assert rc == 0
    written = read_results("privacy_metrics", tmp_path / "r")
    assert written["class"].tolist() == ["overall"] and written["reid_n_synthetic"].tolist() == ["6"]
    # no source rows: the screen only, and the row says why
    assert written["reid_design"].tolist() == ["screen"] and "screen only" in written["notes"].iat[0]
    assert "matched_reid_mean" not in written.columns
    rc = main(["--real", str(stage["split"]), "--synthetic", str(folder), "--results-dir", str(tmp_path / "m"),
               "--reid-model", checkpoint, "--design", "matched", "--device", "cpu"])
    assert rc == 2 and not (tmp_path / "m" / "privacy_metrics.csv").exists()


def test_the_chance_level_ci_resamples_patients_not_their_correlated_images() -> None:
    per_patient = np.linspace(0.1, 0.9, 10)
    values = np.repeat(per_patient, 3)  # three identical images per patient: one observation each, not three
    patients = np.repeat([f"p{i}" for i in range(10)], 3)
    grouped = mean_interval(values, patients, n_resamples=500, seed=3)
    assert grouped == pytest.approx(mean_interval(per_patient, n_resamples=500, seed=3), abs=1e-12)
    by_image = mean_interval(values, n_resamples=500, seed=3)
    assert grouped[0] == pytest.approx(by_image[0])
    assert grouped[2] - grouped[1] > 1.3 * (by_image[2] - by_image[1])  # about sqrt(3) wider


def test_a_share_of_zero_gets_an_interval_not_a_point() -> None:
    # 0 of 120 synthetic images above a threshold every calibration resample agrees on: the bootstrap alone is the
    # point [0, 0]; the Wilson part gives an upper bound of about 3 / 120 over independent images
    scores, thresholds = np.full(120, 0.2), np.full(300, 0.9)
    none_above = share_above(scores, 0.9, thresholds)
    assert (none_above["share"], none_above["count"], none_above["ci_low"]) == (0.0, 0, 0.0)
    assert 0.02 < none_above["ci_high"] < 0.04 and "clustered Wilson over images" in none_above["ci_method"]
    # the same 120 images as 40 patients of 3: the interval is that of 40 independent units
    patients = np.repeat([f"p{i}" for i in range(40)], 3)
    grouped = share_above(scores, 0.9, thresholds, patients, units="patients")
    assert grouped["ci_high"] == pytest.approx(wilson_interval(0, 40)[1]) and grouped["ci_high"] > 0.08


def test_a_share_interval_widens_with_the_uncertainty_of_the_threshold() -> None:
    # 20 of 100 images sit just above the calibrated threshold; resampled calibrations put it on both sides of them
    scores = np.r_[np.full(20, 0.51), np.full(80, 0.1)]
    fixed = share_above(scores, 0.5, np.full(1000, 0.5), seed=1)
    moving = share_above(scores, 0.5, np.r_[np.full(500, 0.45), np.full(500, 0.55)], seed=1)
    assert fixed["share"] == moving["share"] == pytest.approx(0.2)
    assert moving["ci_low"] == 0.0 < fixed["ci_low"] and moving["ci_high"] == pytest.approx(fixed["ci_high"], abs=0.02)


def test_every_figure_of_a_row_has_its_ci_and_the_row_its_provenance(trained) -> None:
    overall = trained["rows"][trained["rows"]["class"] == "overall"].iloc[0]
    for column in ("reid_mean", "reid_share_above", "real_reid_mean", "real_reid_share_above", "reid_threshold",
                   "reid_val_auroc", "reid_val_tmr_at_fmr", "matched_reid_share_above", "matched_null_reid_share_above",
                   "matched_share_difference", "matched_reid_threshold", "matched_null_reid_mean"):
        low, value, high = (float(overall[c]) for c in (f"{column}_ci_low", column, f"{column}_ci_high"))
        assert low <= value <= high, column
        assert low < high, column
    # no interval for a maximum: the bootstrap of an extreme value is inconsistent (it ends at the maximum)
    for column in ("reid_max", "real_reid_max", "matched_reid_max"):
        assert float(overall[column]) > 0 and f"{column}_ci_low" not in overall.index
    for prefix in ("reid", "real_reid", "matched_reid", "matched_null_reid"):
        assert "calibration patients (threshold re-derived" in overall[f"{prefix}_share_above_ci_method"]
    assert (overall["seed"], overall["n_resamples"], overall["reid_arch"], overall["reid_image_size"]) == \
        ("0", "200", "resnet10", "32")
    assert len(overall["git_commit"].split("+")[0]) == 40 and overall["config_hash"] and overall["run_id"]


def test_a_calibration_set_too_small_for_the_false_match_rate_is_said_in_the_row(trained) -> None:
    overall = trained["rows"][trained["rows"]["class"] == "overall"].iloc[0]
    n = int(overall["reid_n_calibration"])
    assert n * float(overall["reid_fmr"]) < 1  # 24 val images at 0.01
    assert f"only {n} calibration images for a false-match rate of 0.01" in overall["notes"]
    assert int(overall["reid_n_calibration_patients"]) == 8


def test_a_generator_that_saw_test_patients_is_refused_before_any_training(stage, tmp_path: Path, capsys) -> None:
    synthetic = tmp_path / "synthetic"
    shutil.copytree(stage["synthetic"], synthetic)
    test_patient = str(pd.read_csv(stage["split"]).query("split == 'test'")["patient_id"].iloc[0])
    manifest = json.loads((synthetic / "manifest.json").read_text())
    (synthetic / "manifest.json").write_text(json.dumps({**manifest, "generator_training": {"patients":
                                                                                             [test_patient]}}))
    rc = main(["--real", str(stage["split"]), "--synthetic", str(synthetic), "--results-dir", str(tmp_path / "r"),
               *TRAIN])
    assert rc == 2 and test_patient in capsys.readouterr().err
    assert not (tmp_path / "r" / "privacy_metrics.csv").exists()
