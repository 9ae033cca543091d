"""``python -m benchmark.data.check_data CSV``: scan every image of a split CSV before a long job starts.

Reads and validates the split, then decodes every image once and lists *all* missing, empty and unreadable
files in one report. Exit status 0 when everything loads, 1 when any image is bad, 2 when the CSV itself is
invalid.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from benchmark.core.cli import describe
from benchmark.data import DataError, ImageProblem, read_split_csv, scan_images


def format_report(csv_path: str, n_images: int, problems: Sequence[ImageProblem]) -> str:
    """The human report: a summary line, then one line per bad image with its row and reason."""
    if not problems:
        return f"{csv_path}: all {n_images} images load"
    lines = [f"{csv_path}: {len(problems)} of {n_images} images cannot be used:"]
    lines += [f"  row {p.row + 1} (line {p.row + 2}): {p.path}: {p.reason}" for p in problems]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check_data.sh", description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", default=os.environ.get("REAL_CSV"), help="split CSV (or $REAL_CSV)")
    parser.add_argument("--image-root", default=os.environ.get("IMAGE_ROOT"),
                        help="folder that relative image paths start from (default: the CSV's folder)")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("NUM_WORKERS", "4")),
                        help="processes decoding images ($NUM_WORKERS)")
    parser.add_argument("--max-image-pixels", type=int, default=None,
                        help="largest image (width x height) to decode; default Pillow's guard, about 179 million "
                             "pixels (a bigger file is reported, not decoded)")
    args = describe(parser).parse_args(argv)
    if args.max_image_pixels is not None:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = args.max_image_pixels
    if not args.csv:
        parser.error("give a split CSV (or set REAL_CSV)")
    try:
        table = read_split_csv(args.csv, image_root=args.image_root)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = table.image_paths()
    problems = scan_images(paths, workers=args.workers)
    report = format_report(args.csv, len(paths), problems)
    print(report, file=sys.stderr if problems else sys.stdout)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
