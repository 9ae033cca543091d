"""The report as a PDF for a paper's supplement: ``report.html`` printed by headless Chromium with the page's own
print stylesheet (A4 landscape, tables wrapped to the page width, image grids folded away).

Chromium is found as ``$CHROMIUM``, else ``chromium``, ``chromium-browser``, ``google-chrome`` or
``google-chrome-stable`` on the PATH; without one, :func:`print_pdf` stops with a message saying how to get it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmark.core.errors import DataError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable to print with, or None."""
    named = os.environ.get("CHROMIUM")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def print_pdf(page: str | Path, pdf: str | Path, *, chromium: str | None = None, timeout: float = 180) -> Path:
    """Print the HTML file ``page`` to ``pdf`` with headless Chromium (no header or footer lines); returns ``pdf``.

    Raises :class:`DataError` when no browser is found, or naming the command and its output when printing fails.
    """
    executable = chromium or find_chromium()
    if executable is None:
        raise DataError("printing the report to PDF needs Chromium or Chrome: install it (Debian: apt install "
                        "chromium) or point $CHROMIUM at the executable; report.html itself prints from any browser")
    page, pdf = Path(page).absolute(), Path(pdf).absolute()
    pdf.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="synthcxr-chromium-") as profile:
        command = [executable, "--headless", "--disable-gpu", "--no-sandbox", "--no-pdf-header-footer",
                   f"--user-data-dir={profile}", f"--print-to-pdf={pdf}", page.as_uri()]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise DataError(f"{executable} did not print {page} within {timeout:.0f} s") from exc
    if done.returncode != 0 or not pdf.is_file() or pdf.stat().st_size == 0:
        raise DataError(f"{executable} could not print {page} to {pdf} (exit {done.returncode}): "
                        f"{(done.stderr or done.stdout).strip()[-600:]}")
    return pdf


def pdf_page_count(pdf: str | Path) -> int:
    """Pages of a PDF written by Chromium (its page objects: ``/Type /Page``)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", Path(pdf).read_bytes()))
