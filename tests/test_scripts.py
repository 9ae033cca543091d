"""The shell entry points in scripts/: runnable as shipped, strict about unset variables, named in the README."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPTS = REPO_ROOT / "scripts"
ENTRY_POINTS = sorted(p.name for p in SCRIPTS.glob("*.sh") if p.name != "_env.sh")
# Each stage script answers --help through its module's parser; setup.sh, lock.sh and test.sh take no --help of their
# own (lock.sh passes its arguments to `uv pip compile`).
ENVIRONMENT_SCRIPTS = {"setup.sh", "lock.sh"}  # they make the environment, so they cannot source _env.sh
WITH_HELP = [name for name in ENTRY_POINTS if name not in {*ENVIRONMENT_SCRIPTS, "test.sh"}]


def _git_mode(path: Path) -> str | None:
    done = subprocess.run(["git", "ls-files", "-s", str(path.relative_to(REPO_ROOT))], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=False)
    return done.stdout.split()[0] if done.returncode == 0 and done.stdout.strip() else None


def test_the_entry_points_are_the_expected_ones() -> None:
    assert ENTRY_POINTS == ["check_data.sh", "generate.sh", "image_quality_metrics.sh", "lock.sh", "make_splits.sh",
                            "privacy_metrics.sh", "register_images.sh", "report.sh", "results.sh", "run_all.sh",
                            "setup.sh", "test.sh", "utility_metrics.sh"]


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_entry_point_is_executable_strict_bash_and_named_in_the_readme(name: str) -> None:
    path = SCRIPTS / name
    text = path.read_text()
    assert os.access(path, os.X_OK), f"{name} has no run bit on disk"
    assert _git_mode(path) in ("100755", None), f"{name} is committed without its run bit"
    assert text.startswith("#!/usr/bin/env bash\n"), f"{name}: not a bash script"
    assert "\nset -euo pipefail\n" in text, f"{name}: unset variables and failed pipes must stop it"
    assert f"scripts/{name}" in (REPO_ROOT / "README.md").read_text(), f"{name} is not named in the README"


def test_env_helper_is_sourced_by_every_stage_script_and_not_run_on_its_own() -> None:
    helper = SCRIPTS / "_env.sh"
    assert not os.access(helper, os.X_OK) and _git_mode(helper) in ("100644", None)
    for name in ENTRY_POINTS:
        if name not in ENVIRONMENT_SCRIPTS:
            assert 'source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"' in (SCRIPTS / name).read_text(), name


@pytest.mark.parametrize("name", WITH_HELP)
def test_entry_point_answers_help_in_a_bare_environment(name: str) -> None:
    # Only PATH and HOME: any variable a script reads without a default would stop it under `set -u`.
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    done = subprocess.run([str(SCRIPTS / name), "--help"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "unbound variable" not in done.stderr
    assert f"usage: {name}" in done.stdout, done.stdout[:500]


def _setup_copy(tmp_path: Path) -> Path:
    """scripts/setup.sh with the checkout's requirements.txt and requirements.lock in a folder of its own."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "setup.sh").write_bytes((SCRIPTS / "setup.sh").read_bytes())
    (tmp_path / "scripts" / "setup.sh").chmod(0o755)
    for name in ("requirements.txt", "requirements.lock", "uv.toml"):
        (tmp_path / name).write_bytes((REPO_ROOT / name).read_bytes())
    return tmp_path


def test_the_lock_was_made_from_the_committed_requirements() -> None:
    import hashlib

    first = (REPO_ROOT / "requirements.lock").read_text().splitlines()[0]
    want = hashlib.sha256((REPO_ROOT / "requirements.txt").read_bytes()).hexdigest()
    assert first == f"# requirements.txt sha256: {want}", "requirements.txt changed: run ./scripts/lock.sh"
    lock = (REPO_ROOT / "requirements.lock").read_text()
    assert "--hash=sha256:" in lock and "\ntorch==" in lock and "\nuv==" in lock  # pinned, hashed, uv included


def test_setup_refuses_a_requirements_file_edited_after_the_lock_and_installs_nothing(tmp_path: Path) -> None:
    root = _setup_copy(tmp_path)
    with (root / "requirements.txt").open("a") as handle:
        handle.write("some-new-package>=1\n")
    done = subprocess.run([str(root / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "./scripts/lock.sh" in done.stderr
    assert not (root / ".venv").exists()


def test_setup_returns_at_once_when_the_environment_was_installed_from_this_very_lock(tmp_path: Path) -> None:
    import hashlib

    root = _setup_copy(tmp_path)
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "python").symlink_to(Path(os.sys.executable))
    stamp = root / ".venv" / ".lock.sha256"
    stamp.write_text(hashlib.sha256((root / "requirements.lock").read_bytes()).hexdigest() + "\n")
    done = subprocess.run([str(root / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""  # nothing installed, nothing said


def test_no_file_of_the_package_is_hidden_from_git_by_an_ignore_rule() -> None:
    # A pattern such as ``demo/`` once matched ``benchmark/demo/`` too: its __init__.py never reached a clone.
    files = [str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "benchmark").rglob("*.py")]
    done = subprocess.run(["git", "check-ignore", "--no-index", *files], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == "", f"ignored by .gitignore: {done.stdout}"


FAST_PATHS = {  # python -m module: the stage behind each script whose work needs torch
    "benchmark.fidelity": "image_quality_metrics.sh", "benchmark.privacy": "privacy_metrics.sh",
    "benchmark.utility": "utility_metrics.sh", "benchmark.report": "report.sh", "benchmark.generation": "generate.sh",
}
_DRIVER = """
import runpy, sys
code = 0
sys.argv = [sys.argv[1], *sys.argv[2:]]
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
from benchmark.core.cli import heavy_modules_loaded
print(f"EXIT {code} HEAVY [{','.join(heavy_modules_loaded())}]")
"""


def _drive(module: str, *argv: str) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-c", _DRIVER, module, *argv], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    return done.stdout.strip().splitlines()[-1], done.stderr


@pytest.mark.parametrize("module", sorted(FAST_PATHS))
def test_help_loads_no_model_library(module: str) -> None:
    last, _ = _drive(module, "--help")
    assert last == "EXIT 0 HEAVY []", f"{FAST_PATHS[module]} --help imported {last}"


@pytest.mark.parametrize("module", ["benchmark.fidelity", "benchmark.privacy", "benchmark.utility"])
def test_a_bad_split_csv_stops_before_torch_is_imported(module: str, tmp_path: Path) -> None:
    split = tmp_path / "split.csv"
    split.write_text("image_path,patient_id,split,prompt,class_label,mass\na.png,p1,train,x,0,1\n")
    (tmp_path / "set").mkdir()
    last, err = _drive(module, "--real", str(split), "--synthetic", str(tmp_path / "set"), "--classes", "mas",
                       "--alignment-model", "x") if module == "benchmark.privacy" else \
        _drive(module, "--real", str(split), "--synthetic", str(tmp_path / "set"), "--classes", "mas")
    assert last == "EXIT 2 HEAVY []", last
    assert "unknown class 'mas'" in err and "did you mean 'mass'?" in err


def test_generate_checks_flags_and_prompts_without_the_launcher(tmp_path: Path) -> None:
    last, err = _drive("benchmark.generation", "--check-only", "--model", "m", "--prompts", str(tmp_path / "no.csv"),
                       "--out", str(tmp_path / "out"))
    assert last == "EXIT 2 HEAVY []", last
    assert "no.csv" in err


@pytest.mark.parametrize("module", ["benchmark.fidelity.defaults", "benchmark.privacy.defaults",
                                    "benchmark.utility.defaults", "benchmark.generation.generate",
                                    "benchmark.data.make_splits", "benchmark.report.cli", "benchmark.core.manage",
                                    "benchmark.pipeline.run_all"])
def test_every_option_has_help_text(module: str) -> None:
    import argparse
    import importlib

    def bare(parser: argparse.ArgumentParser, name: str) -> list[str]:
        out = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                out += [x for sub, p in action.choices.items() for x in bare(p, f"{name} {sub}")]
            elif action.option_strings and not action.help:
                out.append(f"{name} {action.option_strings[-1]}")
        return out

    assert bare(importlib.import_module(module).build_parser(), module) == []


def test_help_shows_defaults_once() -> None:
    from benchmark.fidelity.defaults import build_parser

    text = build_parser().format_help()
    assert "KID subsets averaged (default: 100)" in text
    assert "--seed SEED" in text and "(default: 0)" in text  # a zero default is shown too
    assert "(default 0.9) (default" not in text and "default: None" not in text
