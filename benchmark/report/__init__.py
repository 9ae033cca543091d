"""The report: one Markdown + HTML document from the results tables."""

from benchmark.report.tables import RETRAINED_METRICS, SECTIONS, build_report, main  # noqa: F401
