"""``./scripts/run_all.sh``: one config runs a model through every stage, and a second run skips finished stages.

The demo config (``configs/demo.yaml``) runs once for the module, for real, as a user would run it (the script, in a
subprocess, results and work folders under a temporary folder); later tests run it again against those outputs.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from benchmark.core.results import read_results, table_path
from benchmark.pipeline import RUN_ALL_TABLES, STAGES, ConfigError, Runner, args_to_argv, load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_ALL = REPO_ROOT / "scripts" / "run_all.sh"
DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
DEMO_MODEL = "demo-tiny-ddpm"
#: the tables the demo config fills (it trains a re-id model; it has no alignment model)
DEMO_TABLES = tuple(t for t in RUN_ALL_TABLES if t != "alignment_metrics")
#: variables run_all or the stage scripts read; the tests set what they need and nothing leaks in from the shell.
VARIABLES = ("REAL_CSV", "SYNTHETIC_DIR", "MODEL_NAME", "EXTRA_INFO", "IMAGE_ROOT", "CLASSES", "CLASSIFIER",
             "NUM_PROCESSES", "BATCH_SIZE", "NUM_WORKERS", "SEED", "RESULTS_DIR", "SYNTHCXR_WORK_DIR",
             "MLFLOW_TRACKING_URI")


@dataclass
class Run:
    status: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def commands(self) -> list[str]:
        """The stage commands run_all printed (and ran)."""
        return [line[2:] for line in self.stdout.splitlines() if line.startswith("$ ")]


def run_all(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Run:
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    clean.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})})
    started = time.perf_counter()
    done = subprocess.run([str(RUN_ALL), *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=900)
    return Run(done.returncode, done.stdout, done.stderr, time.perf_counter() - started)


def snapshot(*folders: Path) -> dict[str, tuple[int, str]]:
    """mtime and content hash of every result table, report file and marker under ``folders``."""
    files = [p for folder in folders for pattern in ("*.csv", "report/report.*", "run_all/*.json")
             for p in folder.glob(pattern)]
    return {str(p): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in sorted(files)}


@dataclass
class DemoRun:
    first: Run
    results: Path
    work: Path
    root: Path

    def again(self, *args: str) -> Run:
        return run_all("--config", str(DEMO_CONFIG), "--results-dir", str(self.results), "--work-dir",
                       str(self.work), *args, cwd=self.root)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The demo config run once, from nothing (the demo classifier is trained on first use)."""
    root = tmp_path_factory.mktemp("run_all")
    run = DemoRun(Run(0, "", "", 0.0), root / "results", root / "work", root)
    run.first = run.again()
    print(f"first run: {run.first.seconds:.0f} s")
    return run


@pytest.fixture(scope="module")
def second(demo: DemoRun) -> tuple[Run, dict, dict]:
    """The demo config run again, unchanged; with the outputs' state before and after."""
    before = snapshot(demo.results, demo.work)
    run = demo.again()
    print(f"second run: {run.seconds:.0f} s")
    return run, before, snapshot(demo.results, demo.work)


@pytest.fixture(scope="module")
def changed(demo: DemoRun, second) -> tuple[Run, dict, dict]:
    """The demo config run a third time with one report setting changed (after the unchanged second run)."""
    before = snapshot(demo.results, demo.work)
    run = demo.again("--set", "report.args.samples=2")
    return run, before, snapshot(demo.results, demo.work)


@pytest.mark.slow
def test_first_run_runs_every_stage_and_fills_every_table(demo: DemoRun) -> None:
    run = demo.first
    assert run.status == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for stage in STAGES:
        assert f"run {stage}: no marker" in run.stdout
    scripts = [command.split()[0] for command in run.commands]
    assert scripts == [str(REPO_ROOT / "scripts" / name) for name in
                       ("make_splits.sh", "generate.sh", "image_quality_metrics.sh", "utility_metrics.sh",
                        "privacy_metrics.sh", "report.sh")]
    for table in DEMO_TABLES:
        rows = read_results(table, demo.results)
        assert (rows["model_name"] == DEMO_MODEL).any(), f"no {DEMO_MODEL} rows in {table}"
    assert set(read_results("utility_pretrained", demo.results)["image_source"]) == {"real", "synthetic"}
    assert (demo.results / "report" / "report.html").is_file()
    assert (demo.results / "report" / "report.md").is_file()
    assert sorted(p.stem for p in (demo.work / "run_all").glob("*.json")) == sorted(STAGES)


@pytest.mark.slow
def test_second_run_skips_every_stage_and_changes_nothing(second) -> None:
    run, before, after = second
    assert run.status == 0, run.stderr[-3000:]
    for stage in STAGES:
        assert f"skip {stage}: complete (" in run.stdout
    assert run.commands == []
    assert after == before
    assert run.seconds < 60


@pytest.mark.slow
def test_changed_setting_reruns_that_stage_only(demo: DemoRun, changed) -> None:
    run, before, after = changed
    assert run.status == 0, run.stderr[-3000:]
    assert "run report: changed since the last run: --samples 2 added" in run.stdout
    for stage in ("splits", "generation", "image_quality", "utility", "privacy"):
        assert f"skip {stage}: complete (" in run.stdout
    assert [command.split()[0].rsplit("/", 1)[1] for command in run.commands] == ["report.sh"]
    for table in DEMO_TABLES:
        assert after[str(table_path(table, demo.results))] == before[str(table_path(table, demo.results))]
    report = str(demo.results / "report" / "report.html")
    assert after[report] != before[report]


@pytest.mark.slow
def test_changed_utility_setting_is_detected_and_named(demo: DemoRun, changed) -> None:
    before = snapshot(demo.results, demo.work)
    run = demo.again("--set", "utility.args.n-resamples=1001", "--dry-run")
    assert run.status == 0, run.stderr[-3000:]
    assert "run utility: changed since the last run: --n-resamples 1000 -> 1001" in run.stdout
    for stage in ("splits", "generation", "image_quality"):
        assert f"skip {stage}: complete (" in run.stdout
    assert "run report: decided again after utility runs" in run.stdout
    assert snapshot(demo.results, demo.work) == before  # a dry run writes nothing


@pytest.mark.slow
def test_deleted_result_rows_rerun_their_stage(demo: DemoRun, changed) -> None:
    path = table_path("image_quality_metrics", demo.results)
    rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    rows[rows["class"] != "cardiomegaly"].to_csv(path, index=False)
    run = demo.again("--dry-run")
    assert run.status == 0, run.stderr[-3000:]
    assert "run image_quality: outputs incomplete: 1 of 5 rows it wrote to image_quality_metrics.csv are " \
           "missing" in run.stdout
    for stage in ("splits", "generation"):
        assert f"skip {stage}: complete (" in run.stdout


@pytest.mark.slow
def test_environment_alone_configures_a_run_with_given_split_and_set(demo: DemoRun, tmp_path: Path) -> None:
    from benchmark.demo.run import demo_classifier_dir

    env = {"REAL_CSV": str(demo.work / "real" / "split.csv"), "SYNTHETIC_DIR": str(demo.work / "synthetic"),
           "MODEL_NAME": "env-only", "CLASSIFIER": str(demo_classifier_dir()), "NUM_WORKERS": "0",
           "RESULTS_DIR": str(tmp_path / "results"), "SYNTHCXR_WORK_DIR": str(tmp_path / "work")}
    run = run_all("--skip", "image_quality,report", "--set", "utility.args.n-resamples=1000", cwd=tmp_path, env=env)
    assert run.status == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "(config environment)" in run.stdout
    assert "skip splits: given (" in run.stdout
    assert "skip generation: given (" in run.stdout
    assert "run utility: no marker" in run.stdout
    rows = read_results("utility_pretrained", tmp_path / "results")
    assert set(rows["model_name"]) == {"env-only"}
    assert set(rows["classifier"]) == {str(demo_classifier_dir())}


def test_missing_split_csv_stops_the_run_at_the_splits_stage(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"model_name: m\nsplits: {{csv: {tmp_path / 'missing.csv'}}}\n"
                      f"generation: {{model: {tmp_path / 'model'}}}\n")
    run = run_all("--config", str(config), "--results-dir", str(tmp_path / "results"), cwd=tmp_path)
    assert run.status != 0
    assert f"stage splits failed: split CSV {tmp_path / 'missing.csv'} not found" in run.stderr
    assert "not run: generation, image_quality, utility, report" in run.stderr
    assert run.commands == []
    assert not list((tmp_path / "results").glob("*.csv"))


def test_failing_stage_command_stops_the_run_with_its_status(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"""model_name: broken
splits:
  builder: csv
  args: {{csv: {tmp_path / 'missing.csv'}, image-col: path, patient-col: patient, label-cols: mass, dataset: nih}}
generation: {{model: {tmp_path / 'model'}}}
""")
    run = run_all("--config", str(config), "--results-dir", str(tmp_path / "results"), "--work-dir",
                  str(tmp_path / "work"), cwd=tmp_path)
    assert run.status != 0
    assert "missing.csv" in run.stderr  # make_splits.sh's own message
    assert f"stage splits failed (exit {run.status}); not run: generation, image_quality, utility, report" in run.stderr
    assert [command.split()[0].rsplit("/", 1)[1] for command in run.commands] == ["make_splits.sh"]
    assert not (tmp_path / "work" / "run_all" / "splits.json").exists()
    assert not list((tmp_path / "results").glob("*.csv"))


@pytest.mark.parametrize("name", ["demo.yaml", "padchest_ddpm.example.yaml", "mimic_sd.example.yaml"])
def test_example_configs_parse_and_build_every_command(name: str) -> None:
    config = load_config(str(REPO_ROOT / "configs" / name), env={})
    runner = Runner(config, env={})
    for stage in STAGES:
        command = runner.stage(stage).command
        assert Path(command[0]).parent == REPO_ROOT / "scripts" and Path(command[0]).is_file()


@pytest.mark.parametrize(("name", "dataset"), [("padchest_ddpm.example.yaml", "padchest"),
                                               ("mimic_sd.example.yaml", "mimic-cxr")])
def test_example_configs_choose_a_classifier_the_leakage_guard_accepts(name: str, dataset: str) -> None:
    from benchmark.data.leakage import XRV_TRAINED_ON, check_leakage

    config = load_config(str(REPO_ROOT / "configs" / name), env={})
    classifier = config.utility.classifier
    assert not check_leakage(dataset, classifier, XRV_TRAINED_ON[classifier]).leaky


def test_stage_args_become_flags() -> None:
    assert args_to_argv({"steps": 5, "per_class": True, "no-cache": False, "lora": None, "synonym": ["a=b", "c=d"]}) \
        == ["--steps", "5", "--per-class", "--synonym", "a=b", "--synonym", "c=d"]
    assert args_to_argv(["--steps", "5"]) == ["--steps", "5"]


@pytest.mark.parametrize(("override", "message"), [
    ("utility.args.stage=all", "utility.args: --stage is set by run_all from utility.stage"),
    ("utility.stagee=all", "utility: unknown key 'stagee'"),
    ("generation.images=/x", "generation: give one of synthetic, model, images"),
    ("privacy.reid_model=/x.pth", "privacy: give either reid_model .* or reid_train: true, not both"),
    ("privacy.reid_train=false", "privacy: enabled, but nothing to do"),
    ("privacy.args.reid-train=true", "privacy.args: --reid-train is set by run_all from privacy.reid_train"),
])
def test_invalid_config_is_refused_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(str(DEMO_CONFIG), [override], env={})
