"""The built-in demo, apart from the metrics: phantom chest X-rays (``phantoms``), tiny diffusers models built
from config (``models``, ``tiny_pipelines``) and the demo run itself (``run``).

May import: :mod:`benchmark.core`, :mod:`benchmark.data`, :mod:`benchmark.models`, :mod:`benchmark.generation`,
:mod:`benchmark.utility` (the demo runs the stages it demonstrates).
"""
