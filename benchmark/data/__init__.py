"""Real and synthetic data: split tables, images, synthetic sets, leakage, preprocessing and split builders."""

from benchmark.data.tables import *  # noqa: F403
from benchmark.data.tables import DataError, ImageLoadError, ImageProblem, XrayImage  # noqa: F401
