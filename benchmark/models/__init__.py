"""Classifier models every scoring stage shares: loading torchxrayvision weights with the datasets each saw
(``classifiers``), scoring images (``scoring``) and training DenseNet-121s (``training``, used by the retrained
stage, the re-identification model and the demo's classifier).

May import: :mod:`benchmark.core`, :mod:`benchmark.data`.
"""
