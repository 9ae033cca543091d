"""Specification of the results store (benchmark.core.results) and provenance stamping (benchmark.core.provenance)."""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import __version__
from benchmark.core.provenance import (
    PROVENANCE_COLUMNS,
    config_hash,
    environment_lock,
    git_commit,
    new_run_id,
    package_versions,
    provenance,
)
from benchmark.core.results import (
    RESULT_TABLES,
    ResultsFileError,
    read_results,
    results_dir,
    run_dir,
    table_path,
    upsert_rows,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def iq_row(model: str = "m", cls: str = "overall", **extra) -> dict:
    return {"model_name": model, "extra_info": "", "feature_extractor": "xrv", "class": cls, **extra}


def retrained_row(seed=0, n_real=1100, extra_info="", **extra) -> dict:
    return {
        "model_name": "m",
        "extra_info": extra_info,
        "setting": "mixed",
        "n_real": n_real,
        "n_synthetic": 500,
        "seed": seed,
        "class": "overall",
        **extra,
    }


def raw_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------------------ layout


def test_tables_and_key_columns_match_spec():
    # SPEC §4's three tables, plus the privacy stage's two (README "Privacy and alignment") and the pretrained
    # stage's subgroup rows (README "Subgroups")
    assert RESULT_TABLES == {
        "utility_pretrained_subgroups": ("model_name", "extra_info", "classifier", "image_source", "class",
                                         "subgroup_by", "subgroup"),
        "privacy_metrics": ("model_name", "extra_info", "reid_model", "class"),
        "alignment_metrics": ("model_name", "extra_info", "alignment_model", "class"),
        "image_quality_metrics": ("model_name", "extra_info", "feature_extractor", "class"),
        "utility_pretrained": ("model_name", "extra_info", "classifier", "image_source", "class"),
        "utility_retrained": (
            "model_name",
            "extra_info",
            "setting",
            "n_real",
            "n_synthetic",
            "seed",
            "class",
        ),
    }


def test_table_path_is_table_csv_in_results_dir(tmp_path):
    assert table_path("utility_pretrained", tmp_path / "r") == tmp_path / "r" / "utility_pretrained.csv"
    assert (tmp_path / "r").is_dir()


def test_results_dir_env_var_respected(tmp_path, monkeypatch):
    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "from_env"))
    assert results_dir() == tmp_path / "from_env"
    path = upsert_rows("image_quality_metrics", [iq_row(fid=1.0)])
    assert path == tmp_path / "from_env" / "image_quality_metrics.csv"
    assert path.exists()
    assert results_dir(tmp_path / "arg") == tmp_path / "arg"  # an argument wins over the variable


def test_results_dir_defaults_to_results_in_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("RESULTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert results_dir() == tmp_path / "results"
    assert (tmp_path / "results").is_dir()


def test_run_dir_created_under_runs(tmp_path):
    run_id = new_run_id()
    folder = run_dir(run_id, tmp_path)
    assert folder == tmp_path / "runs" / run_id
    assert folder.is_dir()
    with pytest.raises(ValueError, match="folder name"):
        run_dir("../escape", tmp_path)


# ------------------------------------------------------------------------------------------------ upsert


def test_first_write_creates_file_with_key_columns_first(tmp_path):
    upsert_rows("image_quality_metrics", [{"fid": 12.5, **iq_row()}], results_dir=tmp_path)
    df = read_results("image_quality_metrics", tmp_path)
    assert list(df.columns[:4]) == list(RESULT_TABLES["image_quality_metrics"])
    assert df.loc[0, "fid"] == "12.5"
    assert len(df) == 1


def test_overwriting_existing_key_replaces_row(tmp_path):
    upsert_rows("image_quality_metrics", [iq_row("a", fid=1.0), iq_row("b", fid=2.0)], results_dir=tmp_path)
    upsert_rows("image_quality_metrics", [iq_row("a", fid=3.0)], results_dir=tmp_path)
    df = read_results("image_quality_metrics", tmp_path)
    assert list(df["model_name"]) == ["a", "b"]  # replaced in place, row count unchanged
    assert list(df["fid"]) == ["3.0", "2.0"]


def test_new_keys_are_appended(tmp_path):
    upsert_rows("image_quality_metrics", [iq_row("a", fid=1.0)], results_dir=tmp_path)
    upsert_rows("image_quality_metrics", [iq_row("a", "cardiomegaly", fid=5.0)], results_dir=tmp_path)
    df = read_results("image_quality_metrics", tmp_path)
    assert list(zip(df["class"], df["fid"], strict=True)) == [("overall", "1.0"), ("cardiomegaly", "5.0")]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"seed": 0}, {"seed": "0"}),
        ({"seed": np.int64(3)}, {"seed": 3.0}),
        ({"n_real": 1100}, {"n_real": 1100.0}),
        ({"n_real": "1100.0"}, {"n_real": 1100}),
        ({"extra_info": float("nan")}, {"extra_info": ""}),
        ({"extra_info": None}, {"extra_info": np.nan}),
        ({"extra_info": " lora "}, {"extra_info": "lora"}),
    ],
)
def test_normalised_key_equality(tmp_path, first, second):
    upsert_rows("utility_retrained", [retrained_row(**first, auroc=0.5)], results_dir=tmp_path)
    upsert_rows("utility_retrained", [retrained_row(**second, auroc=0.75)], results_dir=tmp_path)
    df = read_results("utility_retrained", tmp_path)
    assert len(df) == 1
    assert df.loc[0, "auroc"] == "0.75"


def test_key_values_stored_in_canonical_form(tmp_path):
    row = retrained_row(seed=2.0, n_real=np.float64(1100.0))
    upsert_rows("utility_retrained", [row], results_dir=tmp_path)
    row = raw_rows(table_path("utility_retrained", tmp_path))[0]
    assert (row["seed"], row["n_real"], row["n_synthetic"], row["extra_info"]) == ("2", "1100", "500", "")


def test_seed_mean_is_a_distinct_key(tmp_path):
    rows = [retrained_row(seed=s, auroc=v) for s, v in [(0, 0.7), (1, 0.8), ("mean", 0.75)]]
    upsert_rows("utility_retrained", rows, results_dir=tmp_path)
    assert list(read_results("utility_retrained", tmp_path)["seed"]) == ["0", "1", "mean"]


def test_values_round_trip_exactly(tmp_path):
    values = {
        "f": 0.1 + 0.2,
        "tiny": 1e-300,
        "f32": np.float32(0.1),
        "i": np.int32(7),
        "empty": "",
        "nan": float("nan"),
        "none": None,
        "text": 'a,b "q"\nline',
        "flag": True,
        "zero_str": "007",
    }
    upsert_rows("image_quality_metrics", [iq_row(**values)], results_dir=tmp_path)
    df = read_results("image_quality_metrics", tmp_path)
    row = df.iloc[0]
    assert float(row["f"]) == 0.1 + 0.2
    assert float(row["tiny"]) == 1e-300
    assert row["f32"] == "0.1"
    assert row["i"] == "7"
    assert (row["empty"], row["nan"], row["none"]) == ("", "", "")
    assert row["text"] == 'a,b "q"\nline'
    assert row["flag"] == "True"
    assert row["zero_str"] == "007"
    expected = pd.read_csv(table_path("image_quality_metrics", tmp_path), dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(df, expected)


def test_dataframe_input_accepted(tmp_path):
    frame = pd.DataFrame([iq_row("a", fid=1.5), iq_row("b", fid=np.nan)], index=[10, 20])
    upsert_rows("image_quality_metrics", frame, results_dir=tmp_path)
    df = read_results("image_quality_metrics", tmp_path)
    assert list(df["model_name"]) == ["a", "b"]
    assert list(df["fid"]) == ["1.5", ""]


def test_new_column_added_later_keeps_old_rows(tmp_path):
    upsert_rows("image_quality_metrics", [iq_row("a", fid=1.0)], results_dir=tmp_path)
    upsert_rows("image_quality_metrics", [iq_row("b", fid=2.0, precision=0.9)], results_dir=tmp_path)
    df = read_results("image_quality_metrics", tmp_path)
    assert list(df["fid"]) == ["1.0", "2.0"]
    assert list(df["precision"]) == ["", "0.9"]
    assert list(df.columns).index("precision") == len(df.columns) - 1  # appended after existing columns


def test_column_order_stable_when_later_rows_omit_columns(tmp_path):
    upsert_rows("image_quality_metrics", [iq_row("a", fid=1.0, kid=0.1)], results_dir=tmp_path)
    before = list(read_results("image_quality_metrics", tmp_path).columns)
    upsert_rows("image_quality_metrics", [iq_row("b", kid=0.2)], results_dir=tmp_path)
    df = read_results("image_quality_metrics", tmp_path)
    assert list(df.columns) == before
    assert list(df["fid"]) == ["1.0", ""]


def test_empty_write_is_a_no_op(tmp_path):
    path = upsert_rows("image_quality_metrics", [], results_dir=tmp_path)
    assert not path.exists()
    assert list(read_results("image_quality_metrics", tmp_path).columns) == list(RESULT_TABLES["image_quality_metrics"])


def test_no_temp_or_stray_files_left(tmp_path):
    upsert_rows("image_quality_metrics", [iq_row(fid=1.0)], results_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["image_quality_metrics.csv", "image_quality_metrics.csv.lock"]


# ------------------------------------------------------------------------------------------------ errors


def test_missing_key_column_names_table_column_and_row(tmp_path):
    rows = [iq_row("a"), {"model_name": "b", "extra_info": "", "class": "overall"}]
    with pytest.raises(ValueError, match=r"image_quality_metrics: row 1 .*'feature_extractor'"):
        upsert_rows("image_quality_metrics", rows, results_dir=tmp_path)
    assert not table_path("image_quality_metrics", tmp_path).exists()


def test_empty_required_key_value_rejected(tmp_path):
    with pytest.raises(ValueError, match="'class'"):
        upsert_rows("image_quality_metrics", [iq_row(cls=float("nan"))], results_dir=tmp_path)


def test_unknown_table_lists_known_tables(tmp_path):
    with pytest.raises(ValueError, match=r"image_quality_metrics.*utility_pretrained.*utility_retrained"):
        upsert_rows("fidelity", [iq_row()], results_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown results table"):
        read_results("fidelity", tmp_path)


def test_duplicate_key_in_one_call_is_an_error_naming_the_key(tmp_path):
    rows = [retrained_row(seed=0, auroc=0.1), retrained_row(seed="0", auroc=0.2)]
    with pytest.raises(ValueError, match=r"rows 0 and 1 .*seed='0'"):
        upsert_rows("utility_retrained", rows, results_dir=tmp_path)
    assert not table_path("utility_retrained", tmp_path).exists()


@pytest.mark.parametrize(
    "content",
    [
        b"model_name,extra_info,feature_extractor,class,fid\nm,,xrv,overall,1.0\nm2,,xrv\n",  # short row
        b"model_name,extra_info,feature_extractor,class\nm,,xrv,overall,extra\n",  # long row
        b"\xff\xfe\x00\x01garbage\x80\x81",  # not text
        b"a,b,c\n1,2,3\n",  # not this table
        b'model_name,extra_info,feature_extractor,class\n"m"x,,xrv,overall\n',  # broken quoting
    ],
)
def test_corrupt_existing_file_names_file_and_is_left_untouched(tmp_path, content):
    path = table_path("image_quality_metrics", tmp_path)
    path.write_bytes(content)
    with pytest.raises(ResultsFileError, match=str(path)):
        upsert_rows("image_quality_metrics", [iq_row("new", fid=1.0)], results_dir=tmp_path)
    assert path.read_bytes() == content
    with pytest.raises(ValueError, match=str(path)):
        read_results("image_quality_metrics", tmp_path)


# -------------------------------------------------------------------------------------------- provenance


def test_provenance_columns_filled_on_every_row(tmp_path):
    upsert_rows("image_quality_metrics", [iq_row("a"), iq_row("b")], results_dir=tmp_path, config={"k": 1})
    df = read_results("image_quality_metrics", tmp_path)
    for col in PROVENANCE_COLUMNS:
        assert col in df.columns
        assert (df[col] != "").all(), col
    assert df["run_id"].nunique() == 1  # one run id per call
    assert (df["harness_version"] == __version__).all()
    assert (df["config_hash"] == config_hash({"k": 1})).all()
    assert pd.Timestamp(df.loc[0, "timestamp"]).utcoffset() == pd.Timedelta(0)
    assert df.loc[0, "version_python"] == ".".join(map(str, sys.version_info[:3]))


def test_caller_set_run_id_kept(tmp_path):
    upsert_rows("image_quality_metrics", [iq_row("a")], results_dir=tmp_path, run_id="myrun")
    upsert_rows("image_quality_metrics", [iq_row("b", run_id="rowrun")], results_dir=tmp_path, run_id="x")
    df = read_results("image_quality_metrics", tmp_path)
    assert list(df["run_id"]) == ["myrun", "rowrun"]


def test_config_hash_stable_across_dict_order_and_types():
    a = {"lr": 1e-4, "classes": ("a", "b"), "out": Path("/x/y"), "seed": np.int64(0), "nested": {"p": 1, "q": [2]}}
    b = {"nested": {"q": (2,), "p": 1}, "seed": 0, "out": "/x/y", "classes": ["a", "b"], "lr": np.float64(1e-4)}
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 12
    assert all(c in "0123456789abcdef" for c in config_hash(a))


def test_config_hash_differs_for_different_configs():
    assert config_hash({"seed": 0}) != config_hash({"seed": 1})
    assert config_hash({"seed": 0}) != config_hash({"seed": "0"})


def test_package_versions_reads_metadata_without_importing():
    versions = package_versions()
    assert set(versions) == {
        "version_torch",
        "version_torchxrayvision",
        "version_diffusers",
        "version_transformers",
        "version_torchmetrics",
        "version_python",
    }
    assert all(isinstance(v, str) and v for v in versions.values())
    code = "import sys, benchmark.core.provenance as p; p.package_versions(); print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.stdout.strip() == "False", proc.stderr


def test_new_run_id_starts_with_utc_time_and_is_unique():
    before = pd.Timestamp.now(tz="UTC").floor("s")
    ids = [new_run_id() for _ in range(200)]
    after = pd.Timestamp.now(tz="UTC")
    assert len(set(ids)) == 200
    assert all(re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", i) for i in ids)
    assert before <= pd.Timestamp(ids[0][:16]) <= after  # a time prefix, so ids sort by start time
    assert re.fullmatch(r"iq-\d{8}T\d{6}Z-[0-9a-f]{6}", new_run_id("iq"))


def test_provenance_without_config_has_empty_hash():
    prov = provenance(run_id="r1")
    assert tuple(prov) == PROVENANCE_COLUMNS
    assert (prov["run_id"], prov["config_hash"]) == ("r1", "")


def test_rows_say_which_lock_the_environment_was_installed_from(tmp_path):
    # the suite runs in the .venv that scripts/setup.sh installed from the checkout's requirements.lock
    lock_sha = hashlib.sha256((REPO_ROOT / "requirements.lock").read_bytes()).hexdigest()
    assert (Path(sys.prefix) / ".lock.sha256").read_text().strip() == lock_sha
    upsert_rows("image_quality_metrics", [iq_row("a")], results_dir=tmp_path)
    assert read_results("image_quality_metrics", tmp_path).loc[0, "env_lock"] == lock_sha[:12]


def _fake_env(tmp_path: Path, lock_text: str, stamp: str | None = None) -> tuple[str, str]:
    lock = tmp_path / "requirements.lock"
    lock.write_text(lock_text)
    prefix = tmp_path / "venv"
    prefix.mkdir()
    (prefix / ".lock.sha256").write_text(stamp or hashlib.sha256(lock.read_bytes()).hexdigest())
    return str(prefix), str(lock)


def test_an_environment_whose_packages_match_its_lock_reports_the_lock_hash(tmp_path):
    numpy_version = importlib.metadata.version("numpy")
    text = (f"# requirements.txt sha256: x\nnumpy=={numpy_version} \\\n    --hash=sha256:00\n    # via -r x\n"
            "not-a-real-package==9.9 ; sys_platform == 'no-such-platform' \\\n    --hash=sha256:11\n")
    prefix, lock = _fake_env(tmp_path, text)
    assert environment_lock(prefix, lock) == hashlib.sha256(text.encode()).hexdigest()[:12]


def test_a_package_changed_after_install_marks_the_environment_modified(tmp_path):
    prefix, lock = _fake_env(tmp_path, "numpy==0.0.1 \\\n    --hash=sha256:00\n")
    assert environment_lock(prefix, lock).endswith("+modified")
    (tmp_path / "b").mkdir()
    prefix, lock = _fake_env(tmp_path / "b", "surely-not-installed-pkg==1.0\n")
    assert environment_lock(prefix, lock).endswith("+modified")


def test_an_environment_from_another_lock_or_none_says_so(tmp_path):
    prefix, lock = _fake_env(tmp_path, "numpy==0.0.1\n", stamp="ab" * 32)
    assert environment_lock(prefix, lock) == "abababababab+other-lock"
    assert environment_lock(str(tmp_path / "no-venv"), lock) == "unlocked"


# ------------------------------------------------------------------------------------------------- git

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def _git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, check=True).stdout.strip()


@needs_git
def test_git_commit_in_repo_and_dirty_suffix(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "f.txt").write_text("one\n")
    _git(repo, "add", "f.txt")
    _git(repo, "commit", "-q", "-m", "first")
    sha = _git(repo, "rev-parse", "HEAD")
    assert git_commit(repo) == sha
    (repo / "untracked.txt").write_text("ignored\n")
    assert git_commit(repo) == sha  # untracked files do not make it dirty
    (repo / "f.txt").write_text("two\n")
    assert git_commit(repo) == f"{sha}+dirty"


@needs_git
def test_git_commit_outside_repo_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_commit(tmp_path) == "unknown"
    assert git_commit(tmp_path / "does-not-exist") == "unknown"


def test_git_commit_without_git_binary_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert git_commit(REPO_ROOT) == "unknown"


# ----------------------------------------------------------------------------------------- concurrency

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from benchmark.core.results import upsert_rows
    out, worker, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    Path(f"{go}.ready{worker}").touch()
    while not go.exists():
        time.sleep(0.002)
    for i in range(50):
        row = {"model_name": f"w{worker}", "extra_info": "", "setting": "mixed", "n_real": 100,
               "n_synthetic": i, "seed": 0, "class": "overall", "auroc": worker + i / 100}
        upsert_rows("utility_retrained", [row], results_dir=out, config={"worker": worker})
    """
)


def test_concurrent_writers_lose_nothing(tmp_path):
    out, go = tmp_path / "results", tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(out), str(w), str(go)], env=env, cwd=tmp_path)
        for w in range(8)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("go.ready*"))) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()  # all writers start together, maximising contention
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0] * 8
    df = pd.read_csv(table_path("utility_retrained", out), dtype=str, keep_default_na=False)
    assert len(df) == 400
    keys = list(RESULT_TABLES["utility_retrained"])
    assert not df.duplicated(keys).any()
    assert sorted(df.groupby("model_name").size().tolist()) == [50] * 8
    got = {(r.model_name, r.n_synthetic): r.auroc for r in df.itertuples()}
    assert got[("w3", "7")] == repr(3 + 7 / 100)
    assert not list(out.glob("*.tmp"))
