"""``./scripts/report.sh``: leaderboard and plots of everything in ``results/``, as Markdown and one static HTML page.

Owns the report: :func:`build_report` (the core: a results folder in; ``report.md``, ``report.html`` and
``figures/*.png`` out, and what each section found) and :func:`main` (the CLI). Nothing is computed afresh: every
number comes from the result tables of SPEC §4 (read with :func:`benchmark.core.results.read_results`) and every curve
from the per-run files under ``results/runs/<run_id>/``.

Modules: ``loading`` (the result tables, :data:`SECTIONS`, run folders, the pretrained rows merged per class),
``document`` (sections of tables, figures and notes), ``tables`` (the leaderboard and every table section),
``figures`` (the matplotlib plots and the sample-image grids), ``render`` (Markdown and HTML, :func:`build_report`)
and ``cli`` (:func:`main`; ``python -m benchmark.report``).

May import: :mod:`benchmark.core` and :mod:`benchmark.data` only. The report reads result tables; it never imports
the stages (``generation``, ``fidelity``, ``utility``, ``privacy``, ``pipeline``), which load torch and models.

Sections, in this order (HTML anchors in brackets):

* Leaderboard [``leaderboard``]: one row per model with the headline figure of each stage that ran;
* Pretrained-classifier utility [``pretrained``]: per class AUROC / accuracy / precision / recall / F1 with CIs,
  the real test images shown once per classifier beside each model's synthetic images; an AUROC bar plot with CI
  bars and one ROC figure per class (from the runs' ``predictions_*.csv``);
* Retrained-classifier utility [``retrained``]: the RoentGen-shaped table (mean over seeds [CI], change vs real)
  and data-size curves (AUROC against the number of synthetic images, one line per setting, CI bands);
* Image quality [``image-quality``]: FID / KID / precision / recall / density / coverage / detectability per model
  and class, and bar plots of FID, precision, recall and coverage;
* Sample images [``samples``]: per class a grid of positive images, the real ones beside each model's;
* Memorisation [``memorisation``]: flagged shares and the closest synthetic / training pairs.

A stage that has not run (no CSV, or an empty one) is shown as missing with the command that writes it; a missing
run folder or image is reported (with the run id or file) and the rest renders. ``report.html`` is one static file:
images embedded as ``data:`` URIs, inline CSS, no script, and a Content-Security-Policy that forbids any request.

The names below are re-exported so ``from benchmark.report import SECTIONS, build_report, main`` works.
"""

import importlib

# Exported lazily (PEP 562): ``python -m benchmark.report --help`` loads neither matplotlib nor the renderer.
_EXPORTS = {"build_parser": "cli", "main": "cli", "Figure": "document", "Note": "document", "ReportResult": "document",
            "Section": "document", "Table": "document", "DEFAULT_SAMPLES": "document", "SECTIONS": "loading",
            "STAGE_COMMANDS": "loading", "build_report": "render", "PRETRAINED_METRICS": "tables",
            "RETRAINED_METRICS": "tables"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
