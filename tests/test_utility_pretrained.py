"""Pretrained-classifier utility: loading through xrv's cache, leakage guard, label mapping, range check, metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchxrayvision as xrv
from sklearn.metrics import roc_auc_score

from benchmark.core.results import read_results
from benchmark.core.stats import holm_adjust
from benchmark.data import load_image, read_split_csv
from benchmark.data.leakage import LeakageError, check_leakage
from benchmark.data.preprocess import RangeError, check_xrv_range, xrv_input
from benchmark.data.synthetic import write_synthetic_set
from benchmark.models.classifiers import load_checkpoint, load_classifier, place_in_xrv_cache, save_checkpoint
from benchmark.utility.cli import main as utility_main
from benchmark.utility.label_mapping import NORMAL_RULE, class_scores, map_classes, parse_label_map
from benchmark.utility.pretrained import SANITY_FLAG, evaluate, format_table
from tests.conftest import shared_data, write_png


@pytest.fixture(scope="module")
def xrv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary torchxrayvision cache holding random-init weights for the 'pc' and 'nih' keys."""
    cache = tmp_path_factory.mktemp("xrv_cache")
    torch.manual_seed(0)
    for key in ("pc", "nih"):
        place_in_xrv_cache(xrv.models.DenseNet(weights=None), key, cache)
    return cache


def test_random_weights_in_a_temporary_cache_load_through_xrv(xrv_cache: Path) -> None:
    model = xrv.models.DenseNet(weights="densenet121-res224-pc", cache_dir=str(xrv_cache))
    classifier = load_classifier("pc", cache_dir=xrv_cache)
    assert classifier.name == "densenet121-res224-pc" and classifier.calibrated
    assert classifier.outputs == xrv.models.model_urls["densenet121-res224-pc"]["labels"]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, classifier.model.state_dict()[name], rtol=0, atol=0, equal_nan=True)


def test_unknown_weights_key_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown torchxrayvision weights 'padchest'.*densenet121-res224-pc"):
        load_classifier("padchest")


def test_checkpoint_round_trip_keeps_outputs_and_training_data(tmp_path: Path) -> None:
    model = xrv.models.DenseNet(weights=None, num_classes=2, apply_sigmoid=True).eval()
    save_checkpoint(model, tmp_path / "ckpt", ["Mass", "Effusion"], trained_on=["nih"], input_size=64)
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.outputs == ["Mass", "Effusion"] and loaded.trained_on == ("nih",) and loaded.input_size == 64
    batch = torch.rand(2, 1, 64, 64) * 2048 - 1024
    torch.testing.assert_close(loaded.predict(batch), model(batch))


def test_leakage_guard_stops_pc_weights_on_a_padchest_split() -> None:
    with pytest.raises(LeakageError, match=r"densenet121-res224-pc was trained on padchest.*--allow-leakage"):
        check_leakage("padchest", "densenet121-res224-pc", ("padchest",))


def test_leakage_guard_passes_with_the_flag_and_says_so() -> None:
    decision = check_leakage("padchest", "densenet121-res224-pc", ("padchest",), allow_leakage=True)
    assert decision.leaky and decision.allowed and decision.status.startswith("allowed: ")


def test_leakage_guard_knows_image_overlap_and_aliases() -> None:
    assert not check_leakage("padchest", "densenet121-res224-nih", ("nih",)).leaky
    assert check_leakage("NIH_CXR14", "rsna", ("rsna", "nih"), allow_leakage=True).leaky
    assert check_leakage("mimic-cxr", "densenet121-res224-all", ("nih", "mimic-cxr"), allow_leakage=True).leaky
    with pytest.raises(LeakageError, match="does not record its source dataset"):
        check_leakage("unknown", "densenet121-res224-nih", ("nih",))


def test_default_label_mapping_and_not_evaluable_classes() -> None:
    outputs = xrv.models.model_urls["densenet121-res224-chex"]["labels"]  # CheXpert weights: no Mass output
    mappings = {m.name: m for m in map_classes(["soft tissue mass", "cardiomegaly", "pleural effusion", "normal",
                                                "Lung Lesion"], outputs)}
    assert not mappings["soft tissue mass"].evaluable
    assert "nor 'Mass'" in mappings["soft tissue mass"].reason
    assert mappings["cardiomegaly"].output == "Cardiomegaly" and mappings["pleural effusion"].output == "Effusion"
    assert mappings["normal"].normal_rule and mappings["Lung Lesion"].output == "Lung Lesion"
    assert not any(m.proxy for m in mappings.values())
    overridden = map_classes(["soft tissue mass"], outputs, parse_label_map("soft tissue mass=Lung Lesion"))
    assert overridden[0].output == "Lung Lesion" and overridden[0].evaluable and "user mapping" in overridden[0].proxy


def test_soft_tissue_mass_is_not_scored_by_nih_pulmonary_mass_unless_the_user_opts_in_and_then_rows_say_proxy() -> None:
    outputs = xrv.models.model_urls["densenet121-res224-nih"]["labels"]
    default = map_classes(["soft tissue mass", "pulmonary mass"], outputs)
    assert not default[0].evaluable and '--label-map "soft tissue mass=Mass"' in default[0].reason
    assert default[1].output == "Mass" and not default[1].proxy  # pulmonary mass is NIH's own finding
    opted = map_classes(["soft tissue mass"], outputs, parse_label_map("soft tissue mass=Mass"))[0]
    assert opted.evaluable and opted.output == "Mass" and "extrapulmonary" in opted.proxy
    y = np.r_[np.ones(20), np.zeros(60)]
    scores = np.stack([y + np.random.default_rng(0).normal(0, 1, 80)] * len(outputs), axis=1)
    table = evaluate({"real": y[:, None]}, {"real": class_scores(scores, opted, outputs)[:, None]}, [opted],
                     {"soft tissue mass": 0.5}, n_resamples=1000)
    assert bool(table.iloc[0]["proxy"]) and "extrapulmonary" in table.iloc[0]["proxy_note"]


def test_the_synthetic_comparison_needs_a_classifier_that_recognises_the_class_in_real_images() -> None:
    rng = np.random.default_rng(6)
    y = np.r_[np.ones(30), np.zeros(120)]
    weak, strong = 0.3 * y + rng.normal(0, 1, 150), 2.5 * y + rng.normal(0, 1, 150)
    mappings = map_classes(["cardiomegaly"], ["Cardiomegaly"])
    for real_scores, recognised in ((weak, False), (strong, True)):
        table = evaluate({"real": y[:, None], "synthetic": y[:, None]},
                         {"real": real_scores[:, None], "synthetic": strong[:, None]}, mappings,
                         {"cardiomegaly": 0.5}, n_resamples=1000).set_index("image_source")
        synthetic = table.loc["synthetic"]
        assert bool(synthetic["recognised_in_real"]) is recognised
        assert np.isnan(synthetic.get("auroc_diff_real_minus_synthetic", np.nan)) is not recognised
        if not recognised:
            assert "not evaluable for this class" in synthetic["comparison_note"] and "retrained" in \
                synthetic["comparison_note"]


def test_normal_rule_scores_one_minus_the_largest_output() -> None:
    outputs = ["Mass", "", "Effusion"]
    probabilities = np.array([[0.2, np.nan, 0.9], [0.1, np.nan, 0.3]])
    normal = map_classes(["normal"], outputs, {"normal": NORMAL_RULE})[0]
    np.testing.assert_allclose(class_scores(probabilities, normal, outputs), [0.1, 0.7])


def test_range_check_catches_an_image_loaded_without_normalisation(tmp_path: Path) -> None:
    image = load_image(write_png(tmp_path / "x.png", np.linspace(0, 255, 64 * 64).reshape(64, 64).astype(np.uint8)))
    raw = torch.from_numpy(image.pixels.astype(np.float32))[None, None]
    with pytest.raises(RangeError, match="look unnormalised"):
        check_xrv_range(raw, "x.png")
    with pytest.raises(RangeError, match="lie in \\[-1, 1\\]"):
        check_xrv_range(raw / 127.5 - 1, "x.png")
    good = torch.from_numpy(xrv_input(image, 32))[None]
    check_xrv_range(good, "x.png")
    assert good.shape == (1, 1, 32, 32) and float(good.min()) == pytest.approx(-1024, abs=100)


def test_sixteen_bit_images_are_scaled_from_their_true_depth(tmp_path: Path) -> None:
    from PIL import Image

    pixels = np.full((16, 16), 32768, dtype=np.uint16)
    pixels[0, 0] = 0
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    scaled = xrv_input(load_image(tmp_path / "deep.png"), 16)
    assert scaled[0, 8, 8] == pytest.approx(0.0, abs=0.1)  # mid-grey of 65535, not of the image's maximum


def test_metrics_equal_scikit_learn_and_gap_is_reported() -> None:
    rng = np.random.default_rng(0)
    y_real = rng.integers(0, 2, 300).astype(float)
    s_real = np.clip(y_real * 0.4 + rng.normal(0.3, 0.2, 300), 0, 1)
    y_syn = rng.integers(0, 2, 200).astype(float)
    s_syn = rng.random(200)
    y_real[:5] = np.nan  # unknown labels are masked
    mappings = map_classes(["cardiomegaly"], ["Cardiomegaly"])
    table = evaluate({"real": y_real[:, None], "synthetic": y_syn[:, None]},
                     {"real": s_real[:, None], "synthetic": s_syn[:, None]}, mappings, {"cardiomegaly": 0.5},
                     n_resamples=1000, seed=1)
    real = table[table["image_source"] == "real"].iloc[0]
    assert real["n"] == 295 and real["n_unknown_label"] == 5
    assert real["auroc"] == pytest.approx(roc_auc_score(y_real[5:], s_real[5:]))
    assert real["auroc_ci_low"] < real["auroc"] < real["auroc_ci_high"]
    synthetic = table[table["image_source"] == "synthetic"].iloc[0]
    assert synthetic["auroc_diff_real_minus_synthetic"] == pytest.approx(real["auroc"] - synthetic["auroc"])
    assert synthetic["auroc_diff_p_value"] < 0.01 and synthetic["auroc_diff_ci_low"] > 0


def test_label_signal_is_holm_adjusted_over_the_classes_of_each_source() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((150, 3)) < 0.3).astype(float)
    scores = np.stack([y[:, 0] * 0.5 + rng.random(150), rng.random(150), rng.random(150)], axis=1)  # 1 of 3 found
    mappings = map_classes(["cardiomegaly", "effusion", "mass"], ["Cardiomegaly", "Effusion", "Mass"])
    table = evaluate({"real": y, "synthetic": y}, {"real": scores, "synthetic": scores[::-1].copy()}, mappings,
                     {m.name: 0.5 for m in mappings}, n_resamples=1000)
    real = table[table["image_source"] == "real"].set_index("class")
    raw = real["auroc_p_above_chance"].to_numpy()
    assert raw[0] < 1e-6 and list(real["label_signal"]) == [True, False, False]
    np.testing.assert_allclose(real["auroc_p_above_chance_holm"], holm_adjust(raw))  # within the source only
    assert real.loc["cardiomegaly", "auroc_p_above_chance_holm"] == pytest.approx(3 * raw[0])
    synthetic = table[table["image_source"] == "synthetic"]  # scores shuffled away from their labels
    assert not synthetic["label_signal"].any()


def test_sanity_gate_flags_an_inverted_class() -> None:
    y = np.array([0, 1] * 100, dtype=float)
    inverted = 1 - y * 0.8 - 0.1
    mappings = map_classes(["cardiomegaly"], ["Cardiomegaly"])
    table = evaluate({"real": y[:, None]}, {"real": inverted[:, None]}, mappings, {"cardiomegaly": 0.5},
                     n_resamples=1000)
    assert table.iloc[0]["sanity_flag"] == SANITY_FLAG


def _real_split(tmp_path: Path, dataset: str) -> Path:
    """NIH images from ../shared/data/cxr as a split CSV (test split only)."""
    labels = pd.read_csv(shared_data("cxr", "labels.csv"))
    nih = labels[labels["source"] == "nih_cxr14"]
    negative = (nih["Effusion"] == 0) & (nih["Mass"] == 0)
    nih = pd.concat([nih[nih["Effusion"] == 1].head(5), nih[nih["Mass"] == 1].head(5), nih[negative].head(10)])
    frame = pd.DataFrame({"image_path": [str(shared_data("cxr", p)) for p in nih["path"]],
                          "patient_id": nih["patient_id"], "split": "test", "prompt": "PA chest x-ray",
                          "class_label": "", "pleural effusion": nih["Effusion"].astype(int).astype(str),
                          "soft tissue mass": nih["Mass"].astype(int).astype(str), "dataset": dataset})
    frame.to_csv(tmp_path / "real.csv", index=False)
    return tmp_path / "real.csv"


def _synthetic(tmp_path: Path, real_csv: Path) -> Path:
    table = read_split_csv(real_csv)
    images = np.stack([np.asarray(load_image(p).pixels[:64, :64]) for p in table.image_paths()[::2]])
    rows = table.frame.iloc[::2][["prompt", "pleural effusion", "soft tissue mass"]].copy()
    rows.insert(1, "source_row", range(len(rows)))
    rows.insert(2, "seed", "")
    write_synthetic_set(tmp_path / "synthetic", images, rows, {"model": "crops", "classes": table.classes})
    return tmp_path / "synthetic"


def test_real_images_run_through_and_rows_are_written(xrv_cache: Path, tmp_path: Path) -> None:
    real_csv = _real_split(tmp_path, "padchest")
    synthetic = _synthetic(tmp_path, real_csv)
    results = tmp_path / "results"
    status = utility_main(["--real", str(real_csv), "--synthetic", str(synthetic), "--classifier", "nih",
                           "--xrv-cache-dir", str(xrv_cache), "--results-dir", str(results), "--n-resamples", "1000",
                           "--batch-size", "8", "--num-workers", "0", "--label-map", "soft tissue mass=Mass"])
    assert status == 0
    rows = read_results("utility_pretrained", results)
    assert len(rows) == 4
    assert set(rows["image_source"]) == {"real", "synthetic"} and set(rows["class"]) == {"pleural effusion",
                                                                                         "soft tissue mass"}
    assert (rows["classifier"] == "densenet121-res224-nih").all() and (rows["model_name"] == "crops").all()
    assert (rows["leakage"] == "none").all() and rows["auroc_ci_low"].str.len().gt(0).all()
    assert set(rows.loc[rows["proxy"] == "True", "class"]) == {"soft tissue mass"}  # NIH's pulmonary Mass, opted in
    assert (rows["generator_training"] == "unknown").all()
    assert rows["generator_overlap"].str.startswith("not checked").all()
    assert (rows["bootstrap_seed"] == "0").all() and rows["git_commit"].str.len().gt(0).all()
    run = results / "runs" / rows["run_id"].iloc[0]
    assert (run / "roc_pleural_effusion.png").is_file() and (run / "predictions_real.csv").is_file()
    assert len(pd.read_csv(run / "predictions_synthetic.csv")) == 10


def test_leaky_combination_stops_the_run_unless_allowed(xrv_cache: Path, tmp_path: Path, capsys) -> None:
    real_csv = _real_split(tmp_path, "padchest")
    synthetic = _synthetic(tmp_path, real_csv)
    base = ["--real", str(real_csv), "--synthetic", str(synthetic), "--classifier", "pc", "--xrv-cache-dir",
            str(xrv_cache), "--results-dir", str(tmp_path / "results"), "--n-resamples", "1000", "--num-workers", "0"]
    assert utility_main(base) == 2
    assert "leakage: densenet121-res224-pc was trained on padchest" in capsys.readouterr().err
    assert not (tmp_path / "results" / "utility_pretrained.csv").exists()
    assert utility_main([*base, "--allow-leakage"]) == 0
    rows = read_results("utility_pretrained", tmp_path / "results")
    assert rows["leakage"].str.startswith("allowed: densenet121-res224-pc was trained on padchest").all()
    assert (rows["allow_leakage"] == "True").all()
    assert json.loads((synthetic / "manifest.json").read_text())["model"] == "crops"


def _unreachable_weights(monkeypatch: pytest.MonkeyPatch, key: str) -> str:
    """Point xrv's download of ``key`` at a local port nothing listens on: a download that fails on any machine."""
    import torchxrayvision as xrv

    url = "http://127.0.0.1:9/" + Path(xrv.models.model_urls[key]["weights_url"]).name
    monkeypatch.setitem(xrv.models.model_urls[key], "weights_url", url)
    return url


def _nih_weights_on(tmp_path: Path, dataset: str, cache: Path, capsys) -> str:
    """Run the pretrained stage with the nih weights (not in ``cache``) on a split of ``dataset``: exit 2, stderr."""
    real_csv = _real_split(tmp_path, dataset)
    synthetic = _synthetic(tmp_path, real_csv)
    assert utility_main(["--real", str(real_csv), "--synthetic", str(synthetic), "--classifier", "nih",
                         "--xrv-cache-dir", str(cache), "--results-dir", str(tmp_path / "results"),
                         "--num-workers", "0"]) == 2
    return capsys.readouterr().err


def test_the_leakage_guard_decides_before_xrv_weights_are_loaded_or_downloaded(tmp_path: Path, monkeypatch,
                                                                               capsys) -> None:
    _unreachable_weights(monkeypatch, "densenet121-res224-nih")
    err = _nih_weights_on(tmp_path, "my hospital", tmp_path / "empty_cache", capsys)
    assert "'my hospital' is not one the guard knows" in err and "Traceback" not in err
    assert not (tmp_path / "empty_cache").exists() and not (tmp_path / "results" / "utility_pretrained.csv").exists()


def test_weights_that_cannot_be_downloaded_are_a_clear_error_naming_the_url_and_the_file(tmp_path: Path, monkeypatch,
                                                                                         capsys) -> None:
    url = _unreachable_weights(monkeypatch, "densenet121-res224-nih")
    err = _nih_weights_on(tmp_path, "padchest", tmp_path / "cache", capsys)
    assert "torchxrayvision weights 'densenet121-res224-nih' are not in the cache" in err and url in err
    assert str(tmp_path / "cache" / Path(url).name) in err and "Traceback" not in err


def _one_class_table(y_real, s_real, y_syn, s_syn, threshold=0.5, **kwargs) -> pd.DataFrame:
    mappings = map_classes(["pulmonary mass"], ["Mass"])
    return evaluate({"real": np.asarray(y_real, float)[:, None], "synthetic": np.asarray(y_syn, float)[:, None]},
                    {"real": np.asarray(s_real)[:, None], "synthetic": np.asarray(s_syn)[:, None]}, mappings,
                    {"pulmonary mass": threshold}, n_resamples=1000, **kwargs).set_index("image_source")


def test_precision_is_compared_at_the_real_prevalence_and_unequal_prevalences_are_flagged() -> None:
    # the same classifier (sensitivity and specificity alike) on a balanced synthetic set and a real set at 1%
    rng = np.random.default_rng(3)
    y_real = np.r_[np.ones(15), np.zeros(1485)]
    y_syn = np.r_[np.ones(300), np.zeros(600)]
    score = lambda y: np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.15, y.size), 0, 1)  # noqa: E731
    table = _one_class_table(y_real, score(y_real), y_syn, score(y_syn))
    real, synthetic = table.loc["real"], table.loc["synthetic"]
    assert real["prevalence"] == pytest.approx(0.01) and synthetic["prevalence"] == pytest.approx(1 / 3)
    assert not synthetic["prevalence_comparable"] and synthetic["prevalence_ratio"] == pytest.approx(100 / 3)
    se, sp = synthetic["recall"], synthetic["specificity"]
    assert synthetic["precision_at_real_prevalence"] == pytest.approx(se * 0.01 / (se * 0.01 + (1 - sp) * 0.99))
    assert synthetic["precision"] > 3 * synthetic["precision_at_real_prevalence"]  # the raw figure flatters
    low, high = synthetic["precision_at_real_prevalence_ci_low"], synthetic["precision_at_real_prevalence_ci_high"]
    assert low < synthetic["precision_at_real_prevalence"] < high
    assert "precision/accuracy not comparable" in format_table(table.reset_index())


def test_fifteen_positives_are_flagged_as_unable_to_detect_a_difference_of_0_1() -> None:
    rng = np.random.default_rng(4)
    y_real, y_syn = np.r_[np.ones(15), np.zeros(600)], np.r_[np.ones(15), np.zeros(600)]
    table = _one_class_table(y_real, y_real + rng.normal(0, 1, 615), y_syn, 0.7 * y_syn + rng.normal(0, 1, 615))
    for source in ("real", "synthetic"):
        row = table.loc[source]
        assert row["n_positive"] == 15 and row["underpowered"]
        assert 0.15 < row["auroc_mdd80"] < 0.4  # the 0.21-0.30 for PadChest's soft tissue mass
    assert "can detect only AUROC differences >=" in format_table(table.reset_index())


def test_a_metric_without_predicted_positives_is_undefined_not_zero() -> None:
    y = np.r_[np.ones(10), np.zeros(40)]
    scores = np.linspace(0.0, 0.4, 50)  # nothing reaches the 0.5 threshold
    table = _one_class_table(y, scores, y, scores)
    real = table.loc["real"]
    assert np.isnan(real["precision"]) and np.isnan(real["precision_ci_low"])
    assert "precision" in real["undefined_metrics"]
    text = format_table(table.reset_index())
    assert "precision undefined" in text and "precision 0.000 [0.000, 0.000]" not in text


def test_patients_images_are_resampled_together_and_the_rows_say_so() -> None:
    rng = np.random.default_rng(5)
    patients = np.repeat(np.arange(60), 3)
    y = np.repeat((rng.random(60) < 0.3).astype(float), 3)
    s = y + np.repeat(rng.normal(0, 1, 60), 3) + rng.normal(0, 0.3, 180)  # images of a patient nearly alike
    plain = _one_class_table(y, s, y, s).loc["real"]
    clustered = _one_class_table(y, s, y, s, clusters={"real": patients, "synthetic": None}).loc["real"]
    assert clustered["auroc"] == pytest.approx(plain["auroc"]) and clustered["n_patients"] == 60
    width = lambda row, m: row[f"{m}_ci_high"] - row[f"{m}_ci_low"]  # noqa: E731
    assert width(clustered, "auroc") > 1.3 * width(plain, "auroc")
    assert width(clustered, "recall") > width(plain, "recall")
    assert "patient" in clustered["ci_method"] and "patient" not in plain["ci_method"]


def _with_generator_training(synthetic: Path, record) -> None:
    manifest = json.loads((synthetic / "manifest.json").read_text())
    (synthetic / "manifest.json").write_text(json.dumps({**manifest, "generator_training": record}))


def test_a_generator_trained_on_test_patients_is_refused_unless_allowed_and_then_recorded(
        xrv_cache: Path, tmp_path: Path, capsys) -> None:
    real_csv = _real_split(tmp_path, "padchest")
    synthetic = _synthetic(tmp_path, real_csv)
    test_patient = str(pd.read_csv(real_csv)["patient_id"].iloc[3])
    _with_generator_training(synthetic, {"patients": [f"  {test_patient} ", "someone-else"]})  # ids compared stripped
    base = ["--real", str(real_csv), "--synthetic", str(synthetic), "--classifier", "nih", "--xrv-cache-dir",
            str(xrv_cache), "--results-dir", str(tmp_path / "results"), "--n-resamples", "1000", "--num-workers", "0"]
    assert utility_main(base) == 2
    err = capsys.readouterr().err
    assert "generator was trained on 1 test patient(s)" in err and test_patient in err
    assert "--allow-generator-overlap" in err and not (tmp_path / "results" / "utility_pretrained.csv").exists()
    assert utility_main([*base, "--allow-generator-overlap"]) == 0
    rows = read_results("utility_pretrained", tmp_path / "results")
    assert rows["generator_overlap"].str.startswith("allowed: the generator was trained on 1 test patient").all()
    assert (rows["generator_training"] == "2 patient ids, 0 image ids").all()


def test_a_generator_trained_on_other_patients_passes_and_rows_say_what_it_saw(xrv_cache: Path,
                                                                               tmp_path: Path) -> None:
    real_csv = _real_split(tmp_path, "padchest")
    synthetic = _synthetic(tmp_path, real_csv)
    _with_generator_training(synthetic, {"patients": ["p-train-1", "p-train-2"], "images": []})
    assert utility_main(["--real", str(real_csv), "--synthetic", str(synthetic), "--classifier", "nih",
                         "--xrv-cache-dir", str(xrv_cache), "--results-dir", str(tmp_path / "results"),
                         "--n-resamples", "1000", "--num-workers", "0"]) == 0
    rows = read_results("utility_pretrained", tmp_path / "results")
    assert (rows["generator_overlap"] == "none").all()


def test_physician_labels_only_and_an_enriched_case_mix_are_stated_in_the_rows(xrv_cache: Path,
                                                                               tmp_path: Path) -> None:
    real_csv = _real_split(tmp_path, "padchest")
    frame = pd.read_csv(real_csv, dtype=str, keep_default_na=False)
    frame["label_source"] = ["physician" if i % 4 == 0 else "labeller" for i in range(len(frame))]
    frame.to_csv(real_csv, index=False)
    (tmp_path / "real.csv.json").write_text(json.dumps({"case_mix": "enriched: only images with a class"}))
    synthetic = _synthetic(tmp_path, real_csv)
    base = ["--real", str(real_csv), "--synthetic", str(synthetic), "--classifier", "nih", "--xrv-cache-dir",
            str(xrv_cache), "--results-dir", str(tmp_path / "results"), "--n-resamples", "1000", "--num-workers", "0"]
    assert utility_main([*base, "--test-labels", "physician"]) == 0
    rows = read_results("utility_pretrained", tmp_path / "results")
    real = rows[rows["image_source"] == "real"]
    assert (real["n"].astype(int) + real["n_unknown_label"].astype(int) == 5).all()  # 5 of the 20 test rows
    assert (rows["test_labels"] == "physician").all()
    assert (rows["extra_info"] == "test_labels=physician").all()  # its own key: all-label rows are never replaced
    assert rows["case_mix_note"].str.contains("enriched case mix").all()
