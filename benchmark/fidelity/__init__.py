"""Image quality: one feature extraction (``features``, cached) shared by every metric — Fréchet distance, FD∞,
jackknife groups and the chunked nearest-neighbour search (``distances``), KID (``kid``), PRDC and its intervals
(``prdc``), every figure of one comparison as result-row columns (``metrics``), detectability (``detectability``:
a linear probe's held-out real-vs-synthetic AUROC), shareable reference statistics (``reference``; the stage run
against them: ``reference_stage``), diversity (``diversity``), memorisation (``memorisation``) — and the stage's CLI
(``cli``; ``python -m benchmark.fidelity``).

May import: :mod:`benchmark.core`, :mod:`benchmark.data`, :mod:`benchmark.models` (classifier weights as feature
extractors).
"""
