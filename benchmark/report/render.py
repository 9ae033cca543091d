"""Rendering the report: :func:`build_report` reads the result tables, builds every section in report order and
writes ``report.md`` (figures linked relatively) and ``report.html`` (one static file: images embedded as ``data:``
URIs, inline CSS, no script, and a Content-Security-Policy that forbids any request)."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import re
import time
from collections.abc import Sequence
from pathlib import Path

from benchmark.core.results import results_dir
from benchmark.data import atomic_write_text
from benchmark.report.document import DEFAULT_SAMPLES, Figure, Note, ReportResult, Section, Table
from benchmark.report.figures import _Figures, _samples_section
from benchmark.report.leaderboard import leaderboard as build_leaderboard
from benchmark.report.leaderboard import per_class_comparison
from benchmark.report.loading import SECTIONS, _load, _pretrained_view
from benchmark.report.tables import (
    _alignment_table,
    _memorisation_section,
    _pretrained_section,
    _privacy_tables,
    _quality_section,
    _retrained_section,
    _subgroup_table,
)

# --------------------------------------------------------------------------------------------- rendering


def _inline_html(text: str) -> str:
    """Escaped text with the little Markdown the notes use: `code`, **bold**, *emphasis* (never inside code)."""
    parts = re.split(r"`([^`]+)`", text)
    out = []
    for k, part in enumerate(parts):
        if k % 2:
            out.append(f"<code>{html.escape(part)}</code>")
            continue
        part = html.escape(part)
        part = re.sub(r"\*\*(\S(?:[^*]*\S)?)\*\*", r"<strong>\1</strong>", part)
        out.append(re.sub(r"\*(\S(?:[^*]*\S)?)\*", r"<em>\1</em>", part))
    return "".join(out)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1280px;
padding:0 1.2em 3em;color:#1d232a;line-height:1.45}
h1{margin-top:1em}h2{border-bottom:2px solid #d0d7de;padding-bottom:.2em;margin-top:2em}
nav h2{border:none;margin:.6em 0 .2em;font-size:1.1em}nav ol{margin:.2em 0 1em;padding-left:1.6em}
nav .missing{color:#8a6d3b}
table{border-collapse:collapse;margin:.6em 0 .3em;font-size:.82em;width:100%}
th,td{border:1px solid #d0d7de;padding:.25em .45em;text-align:left;vertical-align:top;overflow-wrap:break-word;
hyphens:auto}
th{background:#f3f5f7}
.gallery{display:flex;flex-wrap:wrap;gap:0 1.2em;align-items:flex-start}.gallery figure{display:table}
.gallery figcaption{display:table-caption;caption-side:bottom}
tr:nth-child(even) td{background:#fafbfc}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}
figure{margin:1em 0 1.6em}figure img{max-width:100%;height:auto;border:1px solid #e5e8eb}
figcaption{font-size:.85em;color:#57606a}
code{background:#f3f5f7;padding:0 .25em;border-radius:3px;font-size:.9em}
p.export{font-size:.75em;color:#57606a;margin:0 0 1.2em}
details.grids{margin:1em 0;border:1px solid #d0d7de;padding:.3em .8em}details.grids summary{cursor:pointer}
p.missing{background:#fff8e1;border-left:4px solid #e0a800;padding:.4em .8em}
p.warning{background:#fdecea;border-left:4px solid #d9534f;padding:.4em .8em}
section.missing h2::after{content:" (missing)";color:#8a6d3b;font-size:.7em}
.meta{color:#57606a;font-size:.9em}
@page{size:A4 landscape;margin:11mm}
@media print{
body{max-width:none;padding:0;font-size:9pt;line-height:1.3}
h2{break-after:avoid;page-break-after:avoid;margin-top:1.2em}
table{font-size:7pt;break-inside:auto}tr,figure,img{break-inside:avoid;page-break-inside:avoid}
thead{display:table-header-group}th,td{padding:.15em .3em}
tr:nth-child(even) td,th{-webkit-print-color-adjust:exact;print-color-adjust:exact}
figure img{max-height:160mm;width:auto}
details.grids > :not(summary){display:none}details.grids summary{list-style:none}
a{color:inherit;text-decoration:none}p.export{display:none}
}
"""
#: the page holding every image grid in full, beside report.html
GRIDS_PAGE = "samples.html"


def _head(title: str) -> list[str]:
    return ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
            'style-src \'unsafe-inline\'">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>"]


def _figure_html(block: Figure) -> str:
    data = base64.b64encode(block.path.read_bytes()).decode("ascii")
    alt = html.escape(block.caption, quote=True)
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
            f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>")


def _table_html(block: Table) -> list[str]:
    parts = ["<table>"]
    if block.caption:
        parts.append(f"<caption>{_inline_html(block.caption)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in block.columns) + "</tr></thead><tbody>")
    for row in block.rows:
        parts.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    parts.append("</tbody></table>")
    if block.export:
        parts.append(f'<p class="export">as <a href="{block.export}.csv">CSV</a> · '
                     f'<a href="{block.export}.tex">LaTeX</a> (<code>{html.escape(block.export)}.csv / .tex</code>)'
                     "</p>")
    return parts


def _render_html(sections: Sequence[Section], results: Path, generated: str) -> str:
    parts = [*_head("synthcxr-bench report"), "<header><h1>synthcxr-bench report</h1>",
             f'<p class="meta">Results: <code>{html.escape(str(results))}</code> · generated {html.escape(generated)}'
             "</p><nav><h2>Contents</h2><ol>"]
    for s in sections:
        status = ' class="missing"' if s.status == "missing" else ""
        suffix = " (not run)" if s.status == "missing" else ""
        parts.append(f'<li><a href="#{s.id}"{status}>{html.escape(s.title)}</a>{suffix}</li>')
    parts.append("</ol></nav></header>")
    for s in sections:
        parts.append(f'<section id="{s.id}" class="{s.status}"><h2>{html.escape(s.title)}</h2>')
        blocks = list(s.blocks)
        grids = [b for b in blocks if isinstance(b, Figure) and b.collapse]
        in_gallery = False
        for block in blocks:
            if isinstance(block, Figure) and block.collapse:
                if block is grids[0]:
                    if in_gallery:
                        parts.append("</div>")
                        in_gallery = False
                    parts.append(f'<details class="grids"><summary>{len(grids)} image grid(s), folded: click to show '
                                 f'(every grid in full: <a href="{GRIDS_PAGE}">{GRIDS_PAGE}</a>)</summary>')
                    parts += [_figure_html(g) for g in grids]
                    parts.append("</details>")
                continue
            if isinstance(block, Figure) != in_gallery:  # consecutive figures share one wrapping row
                in_gallery = not in_gallery
                parts.append('<div class="gallery">' if in_gallery else "</div>")
            if isinstance(block, Note):
                parts.append(f'<p class="{block.kind}">{_inline_html(block.text)}</p>')
            elif isinstance(block, Table):
                parts += _table_html(block)
            elif isinstance(block, Figure):
                parts.append(_figure_html(block))
        if in_gallery:
            parts.append("</div>")
        parts.append("</section>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _render_grids_page(sections: Sequence[Section], generated: str) -> str | None:
    """Every folded image grid in full, one after another (None when there is none)."""
    grids = [(s, b) for s in sections for b in s.blocks if isinstance(b, Figure) and b.collapse]
    if not grids:
        return None
    parts = [*_head("synthcxr-bench report: image grids"), "<h1>Image grids</h1>",
             f'<p class="meta">Generated {html.escape(generated)} · <a href="report.html">back to the report</a></p>']
    for section, block in grids:
        parts += [f"<h2>{html.escape(section.title)}</h2>", _figure_html(block)]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _export_tables(sections: Sequence[Section], target: Path) -> list[Path]:
    """Each table as ``tables/<section>-<k>.csv`` and ``.tex`` (booktabs, via pandas) beside the report; the tables
    remember their name for the links under them. Returns the files written."""
    import pandas as pd

    folder = target / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for section in sections:
        tables = [b for b in section.blocks if isinstance(b, Table)]
        for k, table in enumerate(tables, 1):
            name = f"{section.id}-{k}"
            frame = pd.DataFrame(table.rows, columns=table.columns)
            csv = atomic_write_text(folder / f"{name}.csv", frame.to_csv(index=False))
            latex = frame.to_latex(index=False, escape=True, caption=table.caption or None,
                                   label=f"tab:{name}", longtable=len(frame) > 30)
            tex = atomic_write_text(folder / f"{name}.tex", "% needs \\usepackage{booktabs}"
                                    + (" and \\usepackage{longtable}" if len(frame) > 30 else "") + "\n" + latex)
            for path in (csv, tex):
                path.chmod(0o644)
            table.export = f"tables/{name}"
            written += [csv, tex]
    for stale in folder.glob("*"):
        if stale not in written and stale.suffix in (".csv", ".tex"):
            stale.unlink()
    return written


def _render_markdown(sections: Sequence[Section], results: Path, out: Path, generated: str) -> str:
    lines = ["# synthcxr-bench report", "", f"Results: `{results}` · generated {generated}", "", "**Contents**", "",
             *(f"{k}. [{s.title}](#{s.id})" + (" (not run)" if s.status == "missing" else "")
               for k, s in enumerate(sections, 1)), ""]
    for s in sections:
        lines += [f'<a id="{s.id}"></a>', "", f"## {s.title}", ""]
        for block in s.blocks:
            if isinstance(block, Note):
                prefix = {"missing": "> **Missing:** ", "warning": "> **Warning:** "}.get(block.kind, "")
                lines += [prefix + block.text, ""]
            elif isinstance(block, Table):
                if block.caption:
                    lines += [f"**{block.caption}**", ""]
                lines.append("| " + " | ".join(_md_cell(c) for c in block.columns) + " |")
                lines.append("|" + "|".join("---" for _ in block.columns) + "|")
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
                lines.append("")
                if block.export:
                    lines += [f"<sub>as [CSV]({block.export}.csv) · [LaTeX]({block.export}.tex)</sub>", ""]
            elif isinstance(block, Figure):
                relative = block.path.relative_to(out).as_posix()
                lines += [f"![{_md_cell(block.caption)}]({relative})", "", f"*{block.caption}*", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- core


def build_report(results: str | Path | None = None, out: str | Path | None = None, *,
                 n_samples: int = DEFAULT_SAMPLES) -> ReportResult:
    """Render the report of the results folder *results* (default ``$RESULTS_DIR`` or ``results/``) into *out*
    (default ``<results>/report``): ``report.md``, ``report.html`` and ``figures/*.png``.

    Missing stages, run folders and images are reported in their sections, never raised. Raises
    :class:`ResultsFileError` (naming the file and line) for a corrupt results CSV, before anything is written.
    """
    started = time.perf_counter()
    folder = results_dir(results)
    target = Path(out).expanduser().absolute() if out else folder / "report"
    frames = {table: _load(table, folder) for table in ("utility_pretrained", "utility_retrained",
                                                        "image_quality_metrics")}
    target.mkdir(parents=True, exist_ok=True)
    figures = _Figures(target / "figures")
    sections = {sid: Section(sid, title) for sid, title in SECTIONS}
    pretrained = _pretrained_view(frames["utility_pretrained"])
    privacy_frame, alignment_frame = _load("privacy_metrics", folder), _load("alignment_metrics", folder)
    leaderboard = build_leaderboard(sections["leaderboard"], pretrained, frames["utility_retrained"],
                                    frames["image_quality_metrics"], privacy_frame, folder)
    per_class_comparison(sections["pretrained"], pretrained)
    _pretrained_section(sections["pretrained"], pretrained, folder, figures)
    _subgroup_table(sections["pretrained"], _load("utility_pretrained_subgroups", folder))
    _retrained_section(sections["retrained"], frames["utility_retrained"], figures)
    _quality_section(sections["image-quality"], frames["image_quality_metrics"], figures)
    _samples_section(sections["samples"], pretrained, folder, figures, n_samples)
    _memorisation_section(sections["memorisation"], frames["image_quality_metrics"], folder, figures)
    _privacy_tables(sections["privacy"], privacy_frame, folder, figures)
    _alignment_table(sections["image-quality"], alignment_frame)
    owner = {"utility_pretrained": "pretrained", "utility_retrained": "retrained",
             "image_quality_metrics": "image-quality"}
    for table, frame in frames.items():
        for problem in frame.problems:
            sections[owner[table]].warn(problem)
    figures.remove_stale()
    ordered = [sections[sid] for sid, _ in SECTIONS]
    generated = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    exported = _export_tables(ordered, target)
    markdown = atomic_write_text(target / "report.md", _render_markdown(ordered, folder, target, generated))
    page = atomic_write_text(target / "report.html", _render_html(ordered, folder, generated))
    grids_html = _render_grids_page(ordered, generated)
    written = [markdown, page]
    if grids_html is not None:
        written.append(atomic_write_text(target / GRIDS_PAGE, grids_html))
    else:
        (target / GRIDS_PAGE).unlink(missing_ok=True)
    for path in written:
        path.chmod(0o644)  # a temp file's 0600 would hide the report from a web server or a colleague
    return ReportResult(markdown, page, list(figures.written), ordered, leaderboard,
                        time.perf_counter() - started, exported, written[2] if len(written) > 2 else None)
