"""``./scripts/report.sh``: leaderboard and plots of everything in ``results/``, as Markdown and one static HTML page.

The command line (``python -m benchmark.report``): :func:`build_parser` and :func:`main`; the report itself is
:func:`benchmark.report.render.build_report`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from benchmark.core.results import ResultsFileError
from benchmark.report.document import DEFAULT_SAMPLES

# ---------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="report.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", default=os.environ.get("RESULTS_DIR"),
                        help="results folder to report on (default: $RESULTS_DIR, else results/)")
    parser.add_argument("--out", help="where the report goes (default: <results-dir>/report)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"sample images per class and model (default {DEFAULT_SAMPLES})")
    parser.add_argument("--pdf", action="store_true",
                        help="also print report.html to report.pdf with headless Chromium ($CHROMIUM, else chromium "
                        "on the PATH): A4 landscape, for a paper's supplement")
    return parser


def main(argv: Sequence[str] | None = None, *, echo: Callable[[str], None] = print) -> int:
    """Build the report; exit 0 (also when every stage is missing), 2 for a corrupt results CSV."""
    args = build_parser().parse_args(argv)
    if args.samples < 1:
        print("error: --samples must be at least 1", file=sys.stderr)
        return 2
    from benchmark.report.render import build_report  # matplotlib: after the flags

    try:
        result = build_report(args.results_dir, args.out, n_samples=args.samples)
    except ResultsFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    echo(f"report: {result.html} (one static page), {result.markdown} and {len(result.figures)} figure(s) in "
         f"{result.markdown.parent / 'figures'} ({result.seconds:.1f} s); every table as CSV and LaTeX in "
         f"{result.markdown.parent / 'tables'}" + (f"; image grids in full: {result.grids_page}"
                                                  if result.grids_page else ""))
    if args.pdf:
        from benchmark.core.errors import DataError
        from benchmark.report.pdf import pdf_page_count, print_pdf

        try:
            pdf = print_pdf(result.html, result.html.with_suffix(".pdf"))
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        echo(f"report: {pdf} ({pdf_page_count(pdf)} pages, A4 landscape)")
    for section in result.sections:
        detail = f"; {len(section.missing)} item(s) missing" if section.missing and section.status != "missing" else ""
        echo(f"  {section.title:<32} {section.status}{detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
