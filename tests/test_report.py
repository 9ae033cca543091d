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


def _leaderboard_rows(markdown: str) -> dict[str, dict[str, str]]:
    """The Markdown leaderboard's tables merged as {model: {column: cell}} (glossary tables left out)."""
    block = markdown.split("## Leaderboard", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict[str, str]] = {}
    for table in re.findall(r"((?:^\|.*\n)+)", block + "\n", flags=re.M):
        lines = [line for line in table.splitlines() if not line.startswith("|---")]
        cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
        if cells[0][0] == "column":
            continue
        model = cells[0].index("model")
        for row in cells[1:]:
            rows.setdefault(row[model], {}).update(zip(cells[0], row, strict=True))
    return rows


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


def test_demo_report_has_every_section_in_markdown_and_html_and_only_privacy_is_not_run(demo_report) -> None:
    # the demo runs every stage but the privacy stage (./scripts/run_all.sh's demo config runs that one too)
    markdown = demo_report.markdown.read_text()
    page = demo_report.html.read_text()
    assert demo_report.markdown.name == "report.md" and demo_report.html.name == "report.html"
    expected = [(i, t, "missing" if i == "privacy" else "present") for i, t in SECTIONS]
    assert [(s.id, s.title, s.status) for s in demo_report.sections] == expected
    assert all(s.missing == [] for s in demo_report.sections if s.id != "privacy"), \
        [s.missing for s in demo_report.sections]
    headings = [line[3:] for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == [title for _, title in SECTIONS]
    assert re.findall(r'<section id="([^"]+)" class="present"><h2>([^<]+)</h2>', page) == \
        [s for s in SECTIONS if s[0] != "privacy"]
    assert "privacy_metrics.sh" in markdown.split("## Privacy", 1)[1]  # the command that writes the missing table


def test_the_contents_list_every_section_in_order_with_those_not_run_marked(demo_report) -> None:
    page = demo_report.html.read_text()
    contents = page.split("<h2>Contents</h2><ol>", 1)[1].split("</ol>", 1)[0]
    assert re.findall(r'<li><a href="#([^"]+)"[^>]*>([^<]+)</a>', contents) == list(SECTIONS)
    assert '<a href="#privacy" class="missing">' in contents and contents.count("(not run)") == 1
    markdown = demo_report.markdown.read_text()
    assert [f"{k}. [{title}](#{sid})" for k, (sid, title) in enumerate(SECTIONS, 1) if sid != "privacy"] == [
        line for line in markdown.splitlines() if re.match(r"\d\. \[", line) and "(not run)" not in line]


def test_image_grids_are_folded_on_the_page_and_all_shown_on_their_own_page(demo_report) -> None:
    page = demo_report.html.read_text()
    grids = [b for s in demo_report.sections for b in s.blocks if getattr(b, "collapse", False)]
    # the sample grids and the closest-pair grids of memorisation and re-identification
    image_grids = [f for f in demo_report.figures if f.name.startswith(("samples", "memorisation_", "reid_"))]
    assert len(grids) == len(image_grids) and any(f.name.startswith("memorisation_") for f in image_grids)
    with_grids = [s for s in demo_report.sections if any(getattr(b, "collapse", False) for b in s.blocks)]
    folds = page.split('<details class="grids">')[1:]
    assert len(folds) == len(with_grids) >= 2  # one fold per section that has grids, not one per grid
    assert sum(f.split("</details>", 1)[0].count("<img ") for f in folds) == len(grids)
    assert all('href="samples.html"' in f.split("</details>", 1)[0] for f in folds)
    full = demo_report.grids_page.read_text()
    assert demo_report.grids_page.name == "samples.html" and full.count("data:image/png;base64,") == len(grids)
    assert "details.grids > :not(summary){display:none}" in page  # and folded away in print


def test_every_table_is_exported_as_csv_and_booktabs_latex_with_the_cells_shown(demo_report) -> None:
    tables = [(s, b) for s in demo_report.sections for b in s.blocks if type(b).__name__ == "Table"]
    assert len(demo_report.tables) == 2 * len(tables) > 0
    out = demo_report.markdown.parent
    for section, table in tables:
        assert table.export.startswith(f"tables/{section.id}-")
        frame = pd.read_csv(out / f"{table.export}.csv", dtype=str, keep_default_na=False)
        assert list(frame.columns) == table.columns and frame.values.tolist() == table.rows
        latex = (out / f"{table.export}.tex").read_text()
        assert "\\toprule" in latex and "\\midrule" in latex and "\\bottomrule" in latex
        assert latex.count("\\\\\n") >= len(table.rows) + 1  # a header line and one line per row
    assert "[CSV](tables/leaderboard-1.csv)" in demo_report.markdown.read_text()


def test_the_page_prints_on_a4_landscape_with_tables_that_wrap_to_the_page(demo_report) -> None:
    page = demo_report.html.read_text()
    assert "@page{size:A4 landscape" in page and "@media print{" in page
    assert "white-space:nowrap" not in page and "overflow-x:auto" not in page  # no sideways scrolling tables


def test_report_sh_pdf_prints_the_report_with_chromium_to_a_supplements_length(demo_results, tmp_path: Path,
                                                                             capsys) -> None:
    from benchmark.report.pdf import find_chromium, pdf_page_count

    if find_chromium() is None:
        pytest.skip("no Chromium on this machine: the PDF print is checked where one is installed")
    assert main(["--results-dir", str(demo_results.results_dir), "--out", str(tmp_path / "out"), "--pdf"]) == 0
    pdf = tmp_path / "out" / "report.pdf"
    assert pdf.read_bytes().startswith(b"%PDF-")
    # the demo's report printed to 14 A4 landscape pages here (29 before the print stylesheet and folded grids)
    assert 5 <= pdf_page_count(pdf) <= 24
    assert f"report: {pdf} ({pdf_page_count(pdf)} pages, A4 landscape)" in capsys.readouterr().out


def test_without_chromium_pdf_stops_with_how_to_get_it_and_the_report_stays(tmp_path: Path, monkeypatch,
                                                                          capsys) -> None:
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-such-browser"))
    (tmp_path / "results").mkdir()
    assert main(["--results-dir", str(tmp_path / "results"), "--out", str(tmp_path / "out"), "--pdf"]) == 2
    assert "apt install chromium" in capsys.readouterr().err
    assert (tmp_path / "out" / "report.html").is_file() and not (tmp_path / "out" / "report.pdf").exists()


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
    assert not re.search(r'src="(?!data:)', page)  # no file or network reference: every image inline
    assert set(re.findall(r'href="(?!#)([^"]+)"', page)) <= {"samples.html", *(
        f"{t.export}.{ext}" for s in demo_report.sections for t in s.blocks if type(t).__name__ == "Table"
        for ext in ("csv", "tex"))}  # links only to the files written beside the page
    assert "default-src 'none'" in page  # and the page forbids itself any request


def test_leaderboard_lists_the_demo_models_with_the_values_of_the_csvs_and_their_intervals(demo_report,
                                                                                          demo_results) -> None:
    results = demo_results.results_dir
    pretrained = read_results("utility_pretrained", results)
    quality = read_results("image_quality_metrics", results)
    rows = _leaderboard_rows(demo_report.markdown.read_text())
    board = demo_report.leaderboard.set_index("model")
    assert set(DEMO_MODELS) <= set(rows)
    for model in DEMO_MODELS:
        synthetic = pretrained[(pretrained["model_name"] == model) & (pretrained["image_source"] == "synthetic")]
        auroc, low, high = (_numbers(synthetic, c).mean() for c in ("auroc", "auroc_ci_low", "auroc_ci_high"))
        assert rows[model]["pretrained AUROC"] == f"{auroc:.3f} [{low:.3f}, {high:.3f}]"
        assert board.loc[model, "pretrained AUROC"] == pytest.approx(auroc)
        assert board.loc[model, "pretrained AUROC ci_low"] == pytest.approx(low)
        found = int((_numbers(synthetic, "auroc_p_above_chance_holm") < 0.05).sum())  # Holm over the classes
        assert rows[model]["label signal"] == f"{found}/{len(synthetic)}"
        assert found == (len(synthetic) if model == "demo-faithful" else 0)
        overall = quality[(quality["model_name"] == model) & (quality["class"] == "overall")].iloc[0]
        assert rows[model]["FID"] == (f"{float(overall['fid']):.2f} [{float(overall['fid_ci_low']):.2f}, "
                                      f"{float(overall['fid_ci_high']):.2f}]")
        assert rows[model]["coverage"].startswith(f"{float(overall['coverage']):.3f} [")
        assert rows[model]["memorised share"].startswith(f"{float(overall['memorised_share']):.3f} [")
        for column, cell in rows[model].items():  # every figure carries its interval
            if column not in ("rank", "model", "label signal", "pre-specified setting") and cell != "–":
                assert re.fullmatch(r"[+-]?[\d.]+ \[[+-]?[\d.]+, [+-]?[\d.]+\]", cell), (column, cell)
    real = pretrained[pretrained["image_source"] == "real"].drop_duplicates("class")
    reference = rows["real test images (reference)"]["pretrained AUROC"]
    assert reference.startswith(f"{_numbers(real, 'auroc').mean():.3f} [")


def test_leaderboard_ranks_by_the_readme_rule_label_signal_first_then_realism(demo_report) -> None:
    board = demo_report.leaderboard.dropna(subset=["rank"]).set_index("model")
    assert list(board.index[:3]) == ["demo-faithful", "demo-label-blind", "demo-untrained-ddpm"]
    assert board.loc["demo-label-blind", "FID"] < board.loc["demo-untrained-ddpm", "FID"]  # realism decides the rest
    rows = _leaderboard_rows(demo_report.markdown.read_text())
    assert [rows[m]["rank"] for m in DEMO_MODELS] == ["1", "2", "3"]


def test_a_model_without_label_signal_never_ranks_above_one_with_it_whatever_its_auroc(demo_results,
                                                                                     tmp_path: Path) -> None:
    # a pure-noise model whose mean AUROC happens to be the highest point value: no class passes the test
    results = _copy_results(demo_results.results_dir, tmp_path / "results", TABLES)
    frame = pd.read_csv(results / "utility_pretrained.csv", dtype=str, keep_default_na=False)
    blind = (frame["model_name"] == "demo-label-blind") & (frame["image_source"] == "synthetic")
    frame.loc[blind, "auroc"] = "0.99"
    frame.loc[blind, "auroc_p_above_chance_holm"] = "0.2"
    frame.to_csv(results / "utility_pretrained.csv", index=False)
    board = build_report(results, tmp_path / "out").leaderboard.dropna(subset=["rank"]).set_index("model")
    assert board.loc["demo-label-blind", "pretrained AUROC"] > board.loc["demo-faithful", "pretrained AUROC"]
    assert board.loc["demo-faithful", "rank"] == 1 and board.loc["demo-label-blind", "rank"] == 2


def test_pretrained_utility_per_class_puts_every_model_beside_the_real_images(demo_report, demo_results) -> None:
    pretrained = read_results("utility_pretrained", demo_results.results_dir)
    section = demo_report.markdown.read_text().split("## Pretrained-classifier utility", 1)[1]
    table = section.split("Pretrained AUROC per class, every model side by side", 1)[1].split("\n\n", 2)[1]
    lines = [[c.strip() for c in line.strip("|").split(" | ")] for line in table.splitlines()
             if not line.startswith("|---")]
    assert lines[0] == ["class", "real test images", *DEMO_MODELS]
    for line in lines[1:]:
        for model, cell in zip(DEMO_MODELS, line[2:], strict=True):
            row = pretrained[(pretrained["model_name"] == model) & (pretrained["image_source"] == "synthetic")
                             & (pretrained["class"] == line[0])].iloc[0]
            assert cell.startswith(f"{float(row['auroc']):.3f} [{float(row['auroc_ci_low']):.3f}, "
                                   f"{float(row['auroc_ci_high']):.3f}] ({row['n_positive']}/{row['n']})")
            assert cell.endswith("✓") == (float(row["auroc_p_above_chance_holm"]) < 0.05)


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
    assert rows["demo-faithful"]["retrained Δ AUROC vs real (pre-specified setting)"].startswith(
        f"{per_setting[first]:+.3f} [")
    assert rows["demo-faithful"]["pre-specified setting"] == first
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
