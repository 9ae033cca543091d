"""The image-quality stage end to end (``python -m benchmark.fidelity.cli``, what the script runs).

Real data: the phantom demo split (60 patients, 32 px). Synthetic set: 40 phantoms of new patients plus exact
copies of 4 training images, in the SPEC §2 layout. Features: a seeded random-init xrv DenseNet placed in a
temporary xrv cache and loaded through xrv's loader, run at 32 px.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.core.results import read_results
from benchmark.demo.phantoms import FINDINGS, make_phantom_images, write_demo_dataset
from benchmark.fidelity.cli import main
from tests.test_features import place_random_xrv

FAST = ["--image-size", "32", "--jackknife-groups", "10", "--kid-subsets", "10", "--kid-subset-size", "20",
        "--msssim-size", "48", "--diversity-pairs", "20", "--diversity-prompts", "4", "--pixel-size", "32",
        "--max-shift", "1"]
COPIED = (0, 5, 10, 15)  # training rows of the split planted into the synthetic set


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stage")
    place_random_xrv(root / "xrv", seed=0)
    split = write_demo_dataset(root / "demo", n_patients=60, images_per_patient=2, size=32, seed=0)
    images, frame = make_phantom_images(20, 2, 32, seed=5, patient_offset=500)
    train = split[split["split"] == "train"].reset_index(drop=True)
    synthetic = root / "synthetic"
    (synthetic / "images").mkdir(parents=True)
    rows = []
    for i, (image, finding) in enumerate(zip(images, frame["finding"], strict=True)):
        Image.fromarray(image).save(synthetic / "images" / f"{i:03d}.png")
        rows.append({"prompt": f"PA chest x-ray showing {finding}", "img_savename": f"images/{i:03d}.png",
                     "source_row": i // 2, "seed": i % 2, "class_label": FINDINGS.index(finding),
                     **{name: int(name == finding) for name in FINDINGS}})
    for k, row in enumerate(COPIED):
        source = train.loc[row]
        name = f"images/copy{k}.png"
        (synthetic / name).write_bytes((root / "demo" / source["image_path"]).read_bytes())
        rows.append({"prompt": source["prompt"], "img_savename": name, "source_row": 100 + k, "seed": 0,
                     "class_label": source["class_label"], **{c: source[c] for c in FINDINGS}})
    pd.DataFrame(rows).to_csv(synthetic / "synthetic.csv", index=False)
    (synthetic / "manifest.json").write_text(json.dumps({"model": "phantom-copier", "classes": list(FINDINGS)}))
    return {"root": root, "split": root / "demo" / "split.csv", "synthetic": synthetic, "xrv": root / "xrv",
            "cache": root / "cache"}


def run_stage(stage: dict[str, Path], results: Path, *extra: str, cache: Path | None = None) -> int:
    return main(["--real", str(stage["split"]), "--synthetic", str(stage["synthetic"]), "--xrv-cache-dir",
                 str(stage["xrv"]), "--results-dir", str(results), "--cache-dir", str(cache or stage["cache"]),
                 *FAST, *extra])


def test_per_class_rows_compare_positives_of_each_class_with_sample_sizes_and_intervals(
        stage: dict[str, Path], tmp_path: Path) -> None:
    assert run_stage(stage, tmp_path / "results", "--per-class", "--model-name", "copier") == 0
    table = read_results("image_quality_metrics", tmp_path / "results").set_index("class")
    assert list(table.index) == ["overall", *FINDINGS]
    split = pd.read_csv(stage["split"])
    test = split[split["split"] == "test"]
    synthetic = pd.read_csv(stage["synthetic"] / "synthetic.csv")
    for name in FINDINGS:
        assert int(table.loc[name, "n_real"]) == int((test[name] == 1).sum()), name
        assert int(table.loc[name, "n_synthetic"]) == int((synthetic[name] == 1).sum()), name
    assert (int(table.loc["overall", "n_real"]), int(table.loc["overall", "n_synthetic"])) == (len(test), 44)
    overall = table.loc["overall"]
    assert overall["model_name"] == "copier" and overall["feature_extractor"] == "xrv:densenet121-res224-all@32px"
    assert overall["feature_weights"] == "densenet121-res224-all" and overall["real_split"] == "test"
    for metric in ("fid", "precision", "recall", "density", "coverage", "memorised_share"):
        low, value, high = (float(overall[c]) for c in (f"{metric}_ci_low", metric, f"{metric}_ci_high"))
        assert low <= value <= high, metric
    assert float(overall["kid_std"]) > 0 and int(overall["kid_subset_size"]) == 20
    assert float(overall["msssim_same_prompt"]) > 0 and float(overall["msssim_random_real"]) > 0


def test_planted_copies_show_up_in_the_memorisation_share_and_report(stage: dict[str, Path], tmp_path: Path) -> None:
    assert run_stage(stage, tmp_path / "results", "--no-diversity") == 0
    row = read_results("image_quality_metrics", tmp_path / "results").iloc[0]
    assert float(row["memorised_share"]) >= 4 / 44
    split = pd.read_csv(stage["split"])
    assert int(row["memorisation_n_train"]) == int((split["split"] == "train").sum())
    assert int(row["memorisation_n_real"]) == int((split["split"] == "test").sum())
    report = Path(row["report_dir"])
    assert report.parent == tmp_path / "results" / "runs" and report.name == row["run_id"]
    per_image = pd.read_csv(report / "memorisation.csv")
    copies = per_image[per_image["synthetic_path"].str.contains("copy")]
    assert len(per_image) == 44 and copies["flagged"].all()
    assert (copies["pixel_rmse"] < 1e-3).all()  # float32 round-off; other images are ~0.1 away
    assert (report / "memorisation_closest.png").stat().st_size > 0


def test_a_second_run_reads_every_feature_from_the_cache(stage: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--no-diversity", "--no-memorisation")
    assert run_stage(stage, tmp_path / "results", *args, cache=tmp_path / "cache") == 0
    first = read_results("image_quality_metrics", tmp_path / "results").iloc[0]
    assert int(first["fid_floor_n_b"]) == 44  # the floor's other real images (val, then train) are features too
    computed = int(first["features_computed"])
    # 24 real + 44 synthetic + 44 floor images, less floor images with the content of a planted copy (the cache
    # key is the file's content)
    assert 24 + 44 + 44 - len(COPIED) <= computed <= 24 + 44 + 44 and int(first["features_cached"]) == 0
    capsys.readouterr()
    assert run_stage(stage, tmp_path / "results", *args, cache=tmp_path / "cache") == 0
    assert f"features: 0 computed, {computed} from cache" in capsys.readouterr().out
    second = read_results("image_quality_metrics", tmp_path / "results")
    assert len(second) == 1  # the same key: replaced, not appended
    assert int(second.iloc[0]["features_computed"]) == 0 and second.iloc[0]["fid"] == first["fid"]


def test_an_unreadable_image_stops_the_run_with_its_name_and_results_stay_as_they_were(
        stage: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    assert run_stage(stage, results, "--no-diversity", "--model-name", "earlier") == 0
    before = (results / "image_quality_metrics.csv").read_bytes()
    runs_before = sorted((results / "runs").iterdir())
    broken = tmp_path / "synthetic"
    (broken / "images").mkdir(parents=True)
    for name in ("synthetic.csv", "manifest.json"):
        (broken / name).write_bytes((stage["synthetic"] / name).read_bytes())
    for image in (stage["synthetic"] / "images").iterdir():
        (broken / "images" / image.name).write_bytes(image.read_bytes())
    (broken / "images" / "017.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    capsys.readouterr()
    code = main(["--real", str(stage["split"]), "--synthetic", str(broken), "--xrv-cache-dir", str(stage["xrv"]),
                 "--results-dir", str(results), "--cache-dir", str(tmp_path / "cache"), "--model-name", "broken",
                 *FAST])
    assert code == 2
    assert str(broken / "images" / "017.png") in capsys.readouterr().err
    assert (results / "image_quality_metrics.csv").read_bytes() == before
    assert sorted((results / "runs").iterdir()) == runs_before


def test_environment_variables_are_defaults_and_flags_win(stage: dict[str, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REAL_CSV", str(stage["split"]))
    monkeypatch.setenv("SYNTHETIC_DIR", str(stage["synthetic"]))
    monkeypatch.setenv("MODEL_NAME", "from-env")
    monkeypatch.setenv("EXTRA_INFO", "env extra")
    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "env-results"))
    monkeypatch.setenv("SEED", "3")
    code = main(["--model-name", "from-flag", "--xrv-cache-dir", str(stage["xrv"]), "--cache-dir",
                 str(stage["cache"]), "--no-diversity", "--no-memorisation", *FAST])
    assert code == 0
    row = read_results("image_quality_metrics", tmp_path / "env-results").iloc[0]
    assert (row["model_name"], row["extra_info"], row["seed"]) == ("from-flag", "env extra", "3")


def test_n_subsamples_both_sides_to_n_and_refuses_more_than_there_are(
        stage: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_stage(stage, tmp_path / "results", "--n", "12", "--no-diversity", "--no-memorisation") == 0
    row = read_results("image_quality_metrics", tmp_path / "results").iloc[0]
    assert (row["n_real"], row["n_synthetic"], row["n_requested"]) == ("12", "12", "12")
    assert (row["n_real_available"], row["n_synthetic_available"]) == ("24", "44")
    assert run_stage(stage, tmp_path / "results", "--n", "30", "--no-diversity", "--no-memorisation") == 2
    assert "--n 30: only 24 real" in capsys.readouterr().err


def test_the_quick_presets_n_is_a_cap_that_uses_every_image_when_there_are_fewer(
        stage: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_stage(stage, tmp_path / "results", "--preset", "quick", "--no-diversity", "--no-memorisation") == 0
    row = read_results("image_quality_metrics", tmp_path / "results").iloc[0]
    assert (row["n_real"], row["n_synthetic"], row["n_requested"]) == ("24", "44", "500")
    assert row["preset"] == "quick+custom"  # the FAST flags beside it; --n is not among them
    assert "n capped at 500: all 24 real and 44 synthetic images used" in row["notes"]


def test_features_of_the_same_run_are_cached_per_file_not_per_set(stage: dict[str, Path], tmp_path: Path) -> None:
    """A second synthetic set sharing files with the first computes only its new files."""
    assert run_stage(stage, tmp_path / "results", "--no-diversity", "--no-memorisation",
                     cache=tmp_path / "cache") == 0
    other = tmp_path / "other"
    (other / "images").mkdir(parents=True)
    table = pd.read_csv(stage["synthetic"] / "synthetic.csv")
    for name in table["img_savename"]:
        (other / name).write_bytes((stage["synthetic"] / name).read_bytes())
    extra = np.full((32, 32), 90, dtype=np.uint8)
    Image.fromarray(extra).save(other / "images" / "extra.png")
    table = pd.concat([table, table.iloc[[0]].assign(img_savename="images/extra.png")], ignore_index=True)
    table.to_csv(other / "synthetic.csv", index=False)
    (other / "manifest.json").write_text(json.dumps({"model": "other"}))
    assert main(["--real", str(stage["split"]), "--synthetic", str(other), "--xrv-cache-dir", str(stage["xrv"]),
                 "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"),
                 "--no-diversity", "--no-memorisation", *FAST]) == 0
    rows = read_results("image_quality_metrics", tmp_path / "results").set_index("model_name")
    # extra.png, and the one more real image its floor draws (45 instead of 44; floor draws are nested)
    assert int(rows.loc["other", "features_computed"]) == 2


def test_a_class_with_too_few_images_gets_its_sample_sizes_and_a_note_instead_of_figures(
        stage: dict[str, Path], tmp_path: Path) -> None:
    split = pd.read_csv(stage["split"])
    positives = split.loc[split["split"] == "test", list(FINDINGS)].sum()
    k = int(positives.max())  # every class has at most k real positives; the whole test split has more
    assert run_stage(stage, tmp_path / "results", "--per-class", "--k", str(k), "--no-diversity",
                     "--no-memorisation") == 0
    table = read_results("image_quality_metrics", tmp_path / "results").set_index("class")
    assert float(table.loc["overall", "fid"]) > 0 and "too few" not in table.loc["overall", "notes"]
    for name in FINDINGS:
        row = table.loc[name]
        assert (row["fid"], row["precision"]) == ("", ""), name
        assert int(row["n_real"]) == positives[name] and "too few images" in row["notes"]


def test_n_with_a_class_that_has_no_synthetic_image_gives_that_class_its_sizes_and_a_note(
        stage: dict[str, Path], tmp_path: Path) -> None:
    missing = FINDINGS[-1]
    synthetic = tmp_path / "synthetic"
    shutil.copytree(stage["synthetic"], synthetic)
    table = pd.read_csv(synthetic / "synthetic.csv")
    for name in table.loc[table[missing] == 1, "img_savename"]:
        (synthetic / name).unlink()
    table[table[missing] != 1].to_csv(synthetic / "synthetic.csv", index=False)
    assert main(["--real", str(stage["split"]), "--synthetic", str(synthetic), "--xrv-cache-dir", str(stage["xrv"]),
                 "--results-dir", str(tmp_path / "results"), "--cache-dir", str(stage["cache"]), "--per-class",
                 "--n", "12", "--no-diversity", "--no-memorisation", *FAST]) == 0
    rows = read_results("image_quality_metrics", tmp_path / "results").set_index("class")
    assert rows.loc[missing, "n_synthetic"] == "0" and rows.loc[missing, "fid"] == ""
    assert "too few images" in rows.loc[missing, "notes"]
    for name in FINDINGS[:-1]:  # both sides at the smaller count, at most 12
        assert rows.loc[name, "n_real"] == rows.loc[name, "n_synthetic"] != "0", name


def real_image_set(stage: dict[str, Path], out: Path, *, noise: float = 0.0) -> Path:
    """A synthetic set made of the split's *train* images (not in the test reference), optionally with Gaussian
    noise of SD ``noise`` (in [0, 1] pixel units); synthetic.csv carries the source ``patient_id``."""
    split = pd.read_csv(stage["split"])
    train = split[split["split"] == "train"].reset_index(drop=True).iloc[:44]
    rng = np.random.default_rng(9)
    (out / "images").mkdir(parents=True)
    rows = []
    for i, source in train.iterrows():
        pixels = np.asarray(Image.open(stage["split"].parent / source["image_path"]), dtype=np.float64) / 255
        pixels = np.clip(pixels + rng.normal(0.0, noise, pixels.shape), 0, 1) if noise else pixels
        Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(out / "images" / f"{i:03d}.png")
        rows.append({"prompt": source["prompt"], "img_savename": f"images/{i:03d}.png", "source_row": i, "seed": 0,
                     "patient_id": source["patient_id"], "class_label": source["class_label"],
                     **{c: source[c] for c in FINDINGS}})
    pd.DataFrame(rows).to_csv(out / "synthetic.csv", index=False)
    (out / "manifest.json").write_text(json.dumps({"model": out.name, "classes": list(FINDINGS)}))
    return out


def real_and_noisy_rows(stage: dict[str, Path], tmp_path: Path) -> tuple[pd.Series, pd.Series]:
    """The overall rows of two runs: the split's train images as the synthetic set, and the same with noise 0.15."""
    results = tmp_path / "results"
    for name, noise in (("real-train", 0.0), ("noisy-train", 0.15)):
        folder = real_image_set(stage, tmp_path / name, noise=noise)
        assert main(["--real", str(stage["split"]), "--synthetic", str(folder), "--xrv-cache-dir", str(stage["xrv"]),
                     "--results-dir", str(results), "--cache-dir", str(stage["cache"]), "--no-diversity",
                     "--no-memorisation", *FAST]) == 0
    table = read_results("image_quality_metrics", results).set_index("model_name")
    return table.loc["real-train"], table.loc["noisy-train"]


def test_fid_sits_at_its_floor_for_real_images_and_above_it_for_noisy_ones(stage: dict[str, Path],
                                                                              tmp_path: Path) -> None:
    real_row, noisy = real_and_noisy_rows(stage, tmp_path)
    n_val = int((pd.read_csv(stage["split"])["split"] == "val").sum())
    for row in (real_row, noisy):
        assert (int(row["fid_floor_n_a"]), int(row["fid_floor_n_b"])) == (24, 44)  # the row's own sizes
        assert f"{n_val} val + {44 - n_val} train" in row["fid_floor_source"]  # all of val first, then train
        assert "patient-disjoint" in row["fid_floor_source"]
        assert float(row["fid_floor_ci_low"]) <= float(row["fid_floor"]) <= float(row["fid_floor_ci_high"])
        assert float(row["fid_minus_floor"]) == pytest.approx(float(row["fid"]) - float(row["fid_floor"]))
        assert "real: patient, synthetic: source patient" in row["ci_method"]
        assert "FID floor: the same jackknife (10 groups)" in row["ci_method"]
    # measured: real train images read 0.86 x their floor (1.30e5 vs 1.51e5); noisy ones 13.7 x, with the lower end
    # of their interval (5.1e5) 3.4 x the floor
    assert float(real_row["fid"]) == pytest.approx(float(real_row["fid_floor"]), rel=0.4)
    assert float(noisy["fid"]) > 5 * float(noisy["fid_floor"])
    assert float(noisy["fid_ci_low"]) > 1.5 * float(noisy["fid_floor"])


def test_a_linear_probe_cannot_tell_real_train_images_from_the_reference_but_tells_noisy_ones(
        stage: dict[str, Path], tmp_path: Path) -> None:
    real_row, noisy = real_and_noisy_rows(stage, tmp_path)
    for row in (real_row, noisy):
        # real test patients and the synthetic images' (train) source patients: 24 + 44 images, half held out
        assert int(row["detect_n_test_real"]) + int(row["detect_n_test_synthetic"]) == pytest.approx(34, abs=6)
        assert float(row["detect_auroc_ci_low"]) <= float(row["detect_auroc"]) <= float(row["detect_auroc_ci_high"])
        assert "detectability: held-out AUROC of a linear probe" in row["ci_method"]
    # measured: real train images 0.44 [0.23, 0.68]; noisy ones 1.00 [0.88, 1.00], p 5e-7 (without the label strata
    # the real train images read 0.20 [0.08, 0.44]: the demo's label mix is balanced by design, see
    # test_detectability)
    assert float(real_row["detect_auroc_ci_low"]) < 0.5 < float(real_row["detect_auroc_ci_high"])
    assert float(noisy["detect_auroc_ci_low"]) > 0.5 and float(noisy["detect_p"]) < 0.01


def test_fid_against_saved_reference_statistics_equals_fid_against_the_images(stage: dict[str, Path],
                                                                             tmp_path: Path, capsys) -> None:
    results, saved = tmp_path / "results", tmp_path / "published" / "demo_test.npz"
    assert run_stage(stage, results, "--per-class", "--no-memorisation", "--no-diversity", "--no-detectability",
                     "--save-reference", str(saved)) == 0
    header = json.loads(str(np.load(saved)["header"]))
    split = pd.read_csv(stage["split"])
    assert not any(path in json.dumps(header) for path in split["image_path"])  # statistics only
    assert header["extractor"]["name"] == "xrv:densenet121-res224-all@32px" and header["real_split"] == "test"
    assert main(["--reference", str(saved), "--synthetic", str(stage["synthetic"]), "--xrv-cache-dir",
                 str(stage["xrv"]), "--results-dir", str(results), "--cache-dir", str(stage["cache"]), "--per-class",
                 *FAST]) == 0
    table = read_results("image_quality_metrics", results)
    from_images = table[~table["feature_extractor"].str.contains("reference:")].set_index("class")
    from_file = table[table["feature_extractor"].str.contains("reference:demo_test@")].set_index("class")
    assert list(from_file.index) == ["overall", *FINDINGS]  # rows of their own, beside the full ones
    for name in from_file.index:
        assert int(from_file.loc[name, "n_real"]) == int(from_images.loc[name, "n_real"])
        if str(from_images.loc[name, "fid"]) not in ("", "nan"):  # classes of k or fewer images have no FID there
            # 1,024 dims from 24-44 images: covariances of rank < D, so the two paths round differently (measured
            # 1.1e-5 relative)
            assert float(from_file.loc[name, "fid"]) == pytest.approx(float(from_images.loc[name, "fid"]), rel=1e-4)
        assert float(from_file.loc[name, "fid_ci_low"]) <= float(from_file.loc[name, "fid"]) <= \
            float(from_file.loc[name, "fid_ci_high"])
        assert "the reference fixed" in from_file.loc[name, "ci_method"]
        assert "need the real images" in from_file.loc[name, "notes"]
    capsys.readouterr()
    assert main(["--reference", str(saved), "--synthetic", str(stage["synthetic"]), "--xrv-cache-dir",
                 str(stage["xrv"]), "--results-dir", str(results), "--cache-dir", str(stage["cache"]),
                 *FAST, "--image-size", "48"]) != 0
    error = capsys.readouterr().err
    assert "demo_test.npz: made with features 'xrv:densenet121-res224-all@32px'" in error
    assert "in use is 'xrv:densenet121-res224-all@48px'" in error


def test_by_sex_adds_one_row_per_subgroup_comparing_its_real_and_synthetic_images(stage: dict[str, Path],
                                                                                  tmp_path: Path) -> None:
    folder = real_image_set(stage, tmp_path / "real-train")
    split = pd.read_csv(stage["split"], dtype=str)
    synthetic_csv = pd.read_csv(folder / "synthetic.csv", dtype=str)
    sex_of = split.drop_duplicates("patient_id").set_index("patient_id")["sex"]
    synthetic_csv["sex"] = synthetic_csv["patient_id"].map(sex_of)
    synthetic_csv.to_csv(folder / "synthetic.csv", index=False)
    results = tmp_path / "results"
    assert main(["--real", str(stage["split"]), "--synthetic", str(folder), "--xrv-cache-dir", str(stage["xrv"]),
                 "--results-dir", str(results), "--cache-dir", str(stage["cache"]), "--no-diversity",
                 "--no-memorisation", "--by", "sex", *FAST]) == 0
    table = read_results("image_quality_metrics", results).set_index("class")
    test = split[split["split"] == "test"]
    values = sorted(set(test["sex"]))
    assert list(table.index) == ["overall", *[f"sex={v}" for v in values]]
    for value in values:
        row = table.loc[f"sex={value}"]
        assert (row["subgroup_by"], row["subgroup"]) == ("sex", value)
        assert int(row["n_real"]) == int((test["sex"] == value).sum())
        assert int(row["n_synthetic"]) == int((synthetic_csv["sex"] == value).sum())
        patients = test.loc[test["sex"] == value, "patient_id"].nunique()
        if patients >= 5:
            assert float(row["fid_ci_low"]) <= float(row["fid"]) <= float(row["fid_ci_high"])
        else:  # a subgroup too small for the jackknife says so instead of printing an interval
            assert row["fid_ci_low"] == "" and f"no FID/FD∞ interval: {patients} clusters" in row["notes"]
    per_sex = {f"sex={v}": test.loc[test["sex"] == v, "patient_id"].nunique() for v in values}
    assert per_sex == {"sex=F": 4, "sex=M": 8}  # both branches above are exercised


def test_per_class_floors_use_other_real_images_of_the_class_or_halves_of_the_reference(
        stage: dict[str, Path], tmp_path: Path) -> None:
    assert run_stage(stage, tmp_path / "results", "--per-class", "--k", "3", "--no-diversity",
                     "--no-memorisation") == 0
    table = read_results("image_quality_metrics", tmp_path / "results").set_index("class")
    split = pd.read_csv(stage["split"])
    others = split[split["split"] != "test"]
    checked = 0
    for name in FINDINGS:
        row = table.loc[name]
        if row["fid"] != "" and int((others[name] == 1).sum()) >= int(row["n_synthetic"]):
            assert int(row["fid_floor_n_b"]) == int(row["n_synthetic"]), name
            assert int(row["fid_floor_n_a"]) == int(row["n_real"]), name
            checked += 1
    assert checked == len(FINDINGS)
    assert run_stage(stage, tmp_path / "all", "--real-split", "all", "--no-diversity", "--no-memorisation") == 0
    row = read_results("image_quality_metrics", tmp_path / "all").iloc[0]
    assert row["fid_floor_source"].startswith("two patient-disjoint halves of the reference")
    assert int(row["fid_floor_n_a"]) + int(row["fid_floor_n_b"]) <= int(row["n_real"])


def test_bootstrap_is_accepted_with_a_deprecation_warning_and_ignored(stage: dict[str, Path], tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--no-diversity", "--no-memorisation")
    assert run_stage(stage, tmp_path / "a", *args) == 0
    capsys.readouterr()
    assert run_stage(stage, tmp_path / "b", *args, "--bootstrap", "500") == 0
    assert "--bootstrap 500 is deprecated and ignored" in capsys.readouterr().err
    a = read_results("image_quality_metrics", tmp_path / "a").iloc[0]
    b = read_results("image_quality_metrics", tmp_path / "b").iloc[0]
    assert (a["fid_ci_low"], a["fid_ci_high"], a["jackknife_groups"]) == (b["fid_ci_low"], b["fid_ci_high"], "10")
    assert "fid_bootstrap" not in b.index and "kid_subset_p025" in b.index


def _with_record(stage: dict[str, Path], tmp_path: Path, record) -> dict[str, Path]:
    import shutil

    synthetic = tmp_path / "synthetic"
    shutil.copytree(stage["synthetic"], synthetic)
    manifest = json.loads((synthetic / "manifest.json").read_text())
    (synthetic / "manifest.json").write_text(json.dumps({**manifest, "generator_training": record}))
    return {**stage, "synthetic": synthetic}


def test_a_generator_that_saw_test_patients_is_refused_before_any_feature_is_computed(stage, tmp_path: Path,
                                                                                      capsys) -> None:
    test_patient = pd.read_csv(stage["split"]).query("split == 'test'")["patient_id"].iloc[0]
    assert run_stage(_with_record(stage, tmp_path, {"patients": [test_patient]}), tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert "generator was trained on 1 test patient(s)" in err and str(test_patient) in err
    assert not (tmp_path / "r" / "image_quality_metrics.csv").exists()


def test_memorisation_searches_the_generators_own_training_images_when_the_manifest_names_them(stage,
                                                                                               tmp_path: Path) -> None:
    record = {"split_csv": str(stage["split"]), "splits": ["train"]}
    assert run_stage(_with_record(stage, tmp_path, record), tmp_path / "r", "--no-diversity") == 0
    overall = read_results("image_quality_metrics", tmp_path / "r").set_index("class").loc["overall"]
    assert overall["generator_overlap"] == "none" and overall["generator_training"].startswith("split.csv train")
    assert "memorisation searched the generator's own" in overall["notes"]
    assert float(overall["memorised_share"]) >= 4 / 44 - 1e-9  # the four planted copies are found
