"""Privacy: patient re-identification — the re-id model, its embeddings, verification, thresholds and intervals
(``reid``), its training (``training``), the nearest-neighbour screen (``screen``) and CheXGenBench's prompt-matched
design (``matched``) — image-text alignment (``alignment``) and the stage's CLI (``cli``; ``python -m
benchmark.privacy``).

May import: :mod:`benchmark.core`, :mod:`benchmark.data`, :mod:`benchmark.models`, :mod:`benchmark.fidelity`.
"""
