"""The data layer: split CSVs and their validation (``tables``), image loading (``images``: PNG, JPEG, ..., DICOM),
subgroup membership (``subgroups``: sex, age band, view), the decoded-image cache
(``image_cache``), synthetic sets (``synthetic``), preprocessing to classifier input (``preprocess``), the leakage
guard's dataset names and weight table (``leakage``), generator-training records (``generator_training``), the split
builders (``splits``) and the CLIs that make, check and register data (``make_splits``, ``check_data``,
``register_images``).

May import: :mod:`benchmark.core` (and, in ``make_splits`` only, the demo's phantom builder for ``make_splits demo``).
The names below are re-exported so ``from benchmark.data import read_split_csv, load_image, DataError`` works.
"""

from benchmark.core.errors import DataError, ImageLoadError
from benchmark.data.images import (
    ImageProblem,
    XrayImage,
    image_files_under,
    image_suffixes,
    load_image,
    scan_images,
    undersized_note,
)
from benchmark.data.tables import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    SPLIT_NAMES,
    SplitTable,
    atomic_write_text,
    check_label_columns,
    infer_classes,
    label_matrix,
    read_csv_strings,
    read_json_object,
    read_split_csv,
    resolve_image_path,
    sidecar_path,
    split_summary,
    validate_split_frame,
    write_split_csv,
)

__all__ = [
    "OPTIONAL_COLUMNS", "REQUIRED_COLUMNS", "SPLIT_NAMES", "DataError", "ImageLoadError", "ImageProblem",
    "SplitTable", "XrayImage", "atomic_write_text", "check_label_columns", "image_files_under", "image_suffixes",
    "infer_classes", "label_matrix", "load_image", "read_csv_strings", "read_json_object", "read_split_csv",
    "resolve_image_path", "scan_images", "sidecar_path", "split_summary", "undersized_note",
    "validate_split_frame", "write_split_csv",
]
