"""Classifier utility: pretrained-classifier utility (``pretrained``, RoentGen Table 3) and its subgroup analysis
(``subgroups``: FNR and AUROC gaps between sexes, age bands, views), class-to-output label maps
(``label_mapping``), the retrained-classifier sweep (``retrained``) and the main job's CLI (``cli``;
``python -m benchmark.utility``), which also runs the built-in demo when nothing is configured.

May import: :mod:`benchmark.core`, :mod:`benchmark.data`, :mod:`benchmark.models`, :mod:`benchmark.fidelity`
(the ranking's realism distance); the CLI also :mod:`benchmark.demo`.
"""
