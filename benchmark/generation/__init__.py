"""Generation: loading a generator (diffusers pipelines, class-conditional DDPMs: ``pipelines``) and making a
synthetic set from split rows, resumable, one image per row and seed (``generate``; ``python -m benchmark.generation``).

May import: :mod:`benchmark.core`, :mod:`benchmark.data`, :mod:`benchmark.fidelity.features` (the optional
image-is-whole check uses no features; only the extractor's input size).
"""
