"""``./scripts/report.sh``: the leaderboard as Markdown and one static HTML page, from a results folder.

Rendered from the results the built-in demo writes (the session's ``demo_results``), and from copies of them with
stages, run folders or whole tables taken away: a missing stage is shown as missing, never as an error.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.core.results import read_results
from benchmark.report import SECTIONS, build_report, main

DEMO_MODELS = ("demo-faithful", "demo-label-blind", "demo-untrained-ddpm")
TABLES = ("utility_pretrained", "utility_retrained", "image_quality_metrics")
FIGURE_LINK = re.compile(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)")
DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def demo_report(demo_results, tmp_path_factory: pytest.TempPathFactory):
    """The report of the demo's results, built once for the module into its own folder."""
    assert demo_results.status == 0, demo_results.output
    return build_report(demo_results.results_dir, tmp_path_factory.mktemp("report"))


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(frame[column], errors="coerce")


def _leaderboard_rows(markdown: str) -> dict[str, list[str]]:
    """The Markdown leaderboard as {first cell: cells}, with the header under the key ``header``."""
    block = markdown.split("## Leaderboard", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("|") and not line.startswith("|---")]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    return {"header": cells[0], **{row[0]: row for row in cells[1:]}}


def _copy_results(source: Path, target: Path, tables: tuple[str, ...], skip_runs: tuple[str, ...] = ()) -> Path:
    """A results folder with only *tables* copied and every run folder linked except *skip_runs*."""
    target.mkdir(parents=True)
    for table in tables:
        shutil.copy(source / f"{table}.csv", target / f"{table}.csv")
    (target / "runs").mkdir()
    for run in sorted((source / "runs").iterdir()):
        if run.name not in skip_runs:
            (target / "runs" / run.name).symlink_to(run, target_is_directory=True)
    return target


# ------------------------------------------------------------------------------------------ from the demo


def test_demo_report_has_every_section_present_in_markdown_and_html(demo_report) -> None:
    markdown = demo_report.markdown.read_text()
    page = demo_report.html.read_text()
    assert demo_report.markdown.name == "report.md" and demo_report.html.name == "report.html"
    assert [(s.id, s.title, s.status) for s in demo_report.sections] == [(i, t, "present") for i, t in SECTIONS]
    assert all(s.missing == [] for s in demo_report.sections), [s.missing for s in demo_report.sections]
    headings = [line[3:] for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == [title for _, title in SECTIONS]
    assert re.findall(r'<section id="([^"]+)" class="present"><h2>([^<]+)</h2>', page) == list(SECTIONS)
    assert "Not run yet" not in markdown and "Missing:" not in markdown


def test_every_figure_of_the_markdown_is_a_png_on_disk_one_per_expected_plot(demo_report, demo_results) -> None:
    results = demo_results.results_dir
    pretrained = read_results("utility_pretrained", results)
    retrained = read_results("utility_retrained", results)
    quality = read_results("image_quality_metrics", results)
    classifiers = pretrained["classifier"].nunique()
    classes = pretrained["class"].nunique()
    overall = quality[quality["class"] == "overall"]
    expected = {
        "pretrained_auroc": classifiers,  # one AUROC bar plot per classifier
        "roc": classifiers * classes,  # one ROC figure per class
        "retrained_data_size": retrained[retrained["seed"] == "mean"]["model_name"].nunique(),
        "image_quality": quality["feature_extractor"].nunique(),
        "samples": classes,  # one grid per class
        "memorisation": int(_numbers(overall, "memorised_share").notna().sum()),
    }
    links = FIGURE_LINK.findall(demo_report.markdown.read_text())
    assert len(links) == len(set(links)) == sum(expected.values()) == len(demo_report.figures)
    for kind, count in expected.items():
        assert sum(Path(link).name.startswith(kind) for link in links) == count, kind
    assert {demo_report.markdown.parent / link for link in links} == set(demo_report.figures)
    for link in links:
        with Image.open(demo_report.markdown.parent / link) as image:
            assert image.format == "PNG"
            assert image.width >= 200 and image.height >= 150
            pixels = np.asarray(image.convert("L"))
        assert pixels.std() > 5  # a drawn plot, not a blank canvas


def test_html_is_one_static_file_embedding_every_figure_as_png_data(demo_report) -> None:
    page = demo_report.html.read_text()
    embedded = [base64.b64decode(data) for data in DATA_URI.findall(page)]
    assert page.count("data:image/png;base64,") == len(embedded) == len(demo_report.figures)
    links = FIGURE_LINK.findall(demo_report.markdown.read_text())
    for data, link in zip(embedded, links, strict=True):  # same figures, same order as the Markdown
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert data == (demo_report.markdown.parent / link).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    assert "<script" not in page.lower()
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # no file or network reference: everything inline
    assert "default-src 'none'" in page  # and the page forbids itself any request


def test_leaderboard_lists_the_demo_models_with_the_values_of_the_csvs(demo_report, demo_results) -> None:
    results = demo_results.results_dir
    pretrained = read_results("utility_pretrained", results)
    quality = read_results("image_quality_metrics", results)
    rows = _leaderboard_rows(demo_report.markdown.read_text())
    header = rows["header"]
    assert set(DEMO_MODELS) <= set(rows)
    for model in DEMO_MODELS:
        synthetic = pretrained[(pretrained["model_name"] == model) & (pretrained["image_source"] == "synthetic")]
        auroc = _numbers(synthetic, "auroc").mean()
        assert rows[model][header.index("pretrained AUROC")] == f"{auroc:.3f}"
        assert demo_report.leaderboard.set_index("model").loc[model, "pretrained AUROC"] == pytest.approx(auroc)
        found = int((_numbers(synthetic, "auroc_p_above_chance_holm") < 0.05).sum())  # Holm over the classes
        assert rows[model][header.index("classes with label signal")] == f"{found}/{len(synthetic)}"
        assert found == (len(synthetic) if model == "demo-faithful" else 0)
        overall = quality[(quality["model_name"] == model) & (quality["class"] == "overall")]
        assert rows[model][header.index("FID")] == f"{float(overall['fid'].iloc[0]):.2f}"
        assert rows[model][header.index("coverage")] == f"{float(overall['coverage'].iloc[0]):.3f}"
    real = pretrained[pretrained["image_source"] == "real"].drop_duplicates("class")
    assert rows["real test images (reference)"][header.index("pretrained AUROC")] == \
        f"{_numbers(real, 'auroc').mean():.3f}"
    shown = [float(rows[m][header.index("pretrained AUROC")]) for m in rows if m in DEMO_MODELS]
    assert shown == sorted(shown, reverse=True)  # best model first


def test_image_quality_shows_detectability_with_its_interval_and_one_plain_line_per_model(demo_report,
                                                                                         demo_results) -> None:
    quality = read_results("image_quality_metrics", demo_results.results_dir)
    markdown = demo_report.markdown.read_text()
    section = markdown.split("## Image quality", 1)[1].split("\n## ", 1)[0]
    assert "detectability AUROC [95% CI]" in section
    for model in DEMO_MODELS:
        overall = quality[(quality["model_name"] == model) & (quality["class"] == "overall")].iloc[0]
        value, low, high = (float(overall[c]) for c in ("detect_auroc", "detect_auroc_ci_low", "detect_auroc_ci_high"))
        assert low <= value <= high
        assert f"{model} ({overall['feature_extractor']}): a linear probe tells synthetic from real with AUROC " \
               f"{value:.2f} [{low:.2f}, {high:.2f}]" in section
    untrained = quality[(quality["model_name"] == "demo-untrained-ddpm") & (quality["class"] == "overall")].iloc[0]
    assert float(untrained["detect_auroc_ci_low"]) > 0.9  # noise from an untrained DDPM: told apart every time


def test_retrained_leaderboard_cell_is_the_pre_specified_settings_change_not_the_best(demo_report,
                                                                                       demo_results) -> None:
    retrained = read_results("utility_retrained", demo_results.results_dir)
    means = retrained[(retrained["seed"] == "mean") & (retrained["model_name"] == "demo-faithful")]
    per_setting = _numbers(means, "auroc_diff_vs_real").groupby(means["setting_spec"], sort=False).mean().dropna()
    baseline = means["baseline"].iloc[0]
    first = next(spec for spec in per_setting.index if spec != baseline)  # the sweep's order, not the maximum
    rows = _leaderboard_rows(demo_report.markdown.read_text())
    header = rows["header"]
    assert rows["demo-faithful"][header.index("retrained Δ AUROC vs real (pre-specified setting)")] == \
        f"{per_setting[first]:+.3f}"
    assert rows["demo-faithful"][header.index("pre-specified setting")] == first
    table = demo_report.markdown.read_text().split("## Retrained-classifier utility", 1)[1]
    baseline = means["baseline"].iloc[0]
    assert f"| {baseline} (baseline) |" in table  # the RoentGen-shaped table marks the real baseline


# ---------------------------------------------------------------------------------------- missing inputs


def test_only_the_pretrained_table_renders_and_names_the_other_stages_missing(demo_results, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(demo_results.results_dir / "utility_pretrained.csv", results)
    assert main(["--results-dir", str(results), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "out" / "report.html") in printed
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "demo-faithful" in markdown
    for section_title, command in (("Retrained-classifier utility", "--stage retrained"),
                                   ("Image quality", "image_quality_metrics.sh")):
        body = markdown.split(f"## {section_title}", 1)[1].split("\n## ", 1)[0]
        assert "Not run yet" in body and command in body
    page = (tmp_path / "out" / "report.html").read_text()
    for section_id in ("retrained", "image-quality", "memorisation"):
        assert f'<section id="{section_id}" class="missing">' in page
    assert '<section id="pretrained" class="present">' in page
    assert "Traceback" not in markdown


def test_an_empty_results_folder_renders_with_every_stage_missing(tmp_path: Path) -> None:
    assert main(["--results-dir", str(tmp_path / "results"), "--out", str(tmp_path / "out")]) == 0
    result = build_report(tmp_path / "results", tmp_path / "out")
    assert [s.status for s in result.sections] == ["missing"] * len(SECTIONS)
    assert result.figures == [] and list((tmp_path / "out" / "figures").glob("*.png")) == []
    markdown = result.markdown.read_text()
    bodies = dict(zip([title for _, title in SECTIONS], markdown.split("\n## ")[1:], strict=True))
    assert "No results yet" in bodies["Leaderboard"]
    for title in ("Pretrained-classifier utility", "Retrained-classifier utility", "Image quality", "Memorisation"):
        assert "> **Missing:** Not run yet" in bodies[title] and ".sh " in bodies[title]  # with the command to run
    assert "> **Missing:** No per-image predictions" in bodies["Sample images"]
    assert result.html.read_text().count('class="missing"><h2>') == len(SECTIONS)


def test_the_script_reports_on_results_dir_from_the_environment_into_its_report_folder(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "report.sh"
    env = {**os.environ, "RESULTS_DIR": str(tmp_path / "results")}
    run = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "results" / "report" / "report.html").is_file()
    assert (tmp_path / "results" / "report" / "report.md").is_file()
    assert f"report: {tmp_path / 'results' / 'report' / 'report.html'}" in run.stdout


def test_a_deleted_run_folder_is_reported_missing_with_its_run_id_and_the_rest_renders(demo_results,
                                                                                       tmp_path: Path) -> None:
    pretrained = read_results("utility_pretrained", demo_results.results_dir)
    faithful = pretrained[(pretrained["model_name"] == "demo-faithful") & (pretrained["image_source"] == "synthetic")]
    run_id = faithful["run_id"].iloc[0]
    results = _copy_results(demo_results.results_dir, tmp_path / "results", ("utility_pretrained",), (run_id,))
    result = build_report(results, tmp_path / "out")
    section = result.section("pretrained")
    assert section.status == "present"
    assert [m for m in section.missing if run_id in m and "demo-faithful" in m]
    assert len(section.missing) == 1
    roc = [f for f in section.figures if f.path.name.startswith("roc_")]
    assert len(roc) == pretrained["class"].nunique()  # every class still drawn, from the other runs
    samples = result.section("samples")
    assert samples.status == "present" and any(run_id in m for m in samples.missing)
    assert len(samples.figures) == pretrained["class"].nunique()
    assert run_id in result.html.read_text()


def test_a_corrupt_results_csv_stops_with_status_2_naming_the_file(demo_results, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    results.mkdir()
    corrupt = results / "utility_retrained.csv"
    shutil.copy(demo_results.results_dir / "utility_retrained.csv", corrupt)
    with corrupt.open("a") as handle:
        handle.write("demo-faithful,,real:1,1,0\n")  # too few fields
    assert main(["--results-dir", str(results), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert str(corrupt) in error and "line" in error
    assert not (tmp_path / "out" / "report.html").exists()  # nothing half-written


def test_a_value_that_is_not_a_number_is_shown_missing_and_named_by_row_and_column(demo_results,
                                                                                    tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    frame = read_results("utility_pretrained", demo_results.results_dir)
    i = int(frame.index[frame["image_source"] == "synthetic"][0])
    frame.loc[i, "auroc"] = "oops"
    frame.to_csv(results / "utility_pretrained.csv", index=False)
    result = build_report(results, tmp_path / "out")
    markdown = result.markdown.read_text()
    assert (f"`utility_pretrained.csv` row {i + 1} (line {i + 2}), column `auroc`: 'oops' is not a number"
            in markdown)
    row = next(line for line in markdown.splitlines()
               if line.startswith(f"| {frame.loc[i, 'class']} | {frame.loc[i, 'model_name']} | "))
    assert row.split(" | ")[3] == "–"  # the AUROC cell


# ------------------------------------------------------------------------------------------- the browser


def _chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: CI's set-up (scripts/test.sh) installs Debian's chromium")
        pytest.skip("chromium is not installed on this machine")
    return path


@pytest.mark.slow
def test_the_html_page_opens_in_headless_chromium_without_errors(demo_report, tmp_path: Path) -> None:
    browser = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    url = demo_report.html.resolve().as_uri()
    shot = tmp_path / "shot.png"
    run = subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1280,2000", url], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == []  # the page logs nothing: no script error, no blocked request
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 10 and pixels.min() < 100  # text and plots drawn, not a blank page
    dom = subprocess.run([*browser, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-3000:]
    assert re.findall(r'<section id="([^"]+)"', dom.stdout) == [section_id for section_id, _ in SECTIONS]
    assert len(DATA_URI.findall(dom.stdout)) == len(demo_report.figures)


def test_retrained_table_columns_are_the_stages_own() -> None:
    # The report names them without importing the (torch-heavy) stage module; this keeps the two in step.
    from benchmark.report import RETRAINED_METRICS
    from benchmark.utility.retrained import TABLE_METRICS

    assert tuple(RETRAINED_METRICS) == tuple(TABLE_METRICS)
