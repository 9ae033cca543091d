"""Shared pieces every stage uses, and nothing stage-specific: the results store (``results``), run provenance
(``provenance``), experiment tracking (``tracking``), CLI helpers (``cli``), statistics (``stats``) and the
:class:`~benchmark.core.errors.DataError` every stage reports.

May import: the standard library and third-party packages only; never another ``benchmark`` subpackage.
"""
