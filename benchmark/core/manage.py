"""``./scripts/results.sh``: what the results tables hold, and taking a wrong run's rows out of them.

``list``: per table, one line per (model_name, extra_info) with its row count and the values of its other key
columns. ``remove --model NAME [--extra-info X] [--table T]``: deletes that model's rows (every extra_info unless
given) from every table (or one), after showing them and asking; each changed table is first copied to
``<results>/backups/<table>.<timestamp>.csv`` (:func:`benchmark.core.results.remove_rows`). Run folders under
``results/runs/`` are left as they are (they are the runs' own records).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from benchmark.core.errors import DataError
from benchmark.core.results import RESULT_TABLES, read_results, remove_rows, results_dir, table_path


def summary(folder: str | Path | None = None) -> pd.DataFrame:
    """One row per (table, model_name, extra_info): ``rows`` and, per other key column, its values joined by
    ``, `` (columns ``table, model_name, extra_info, rows, other_keys``). Tables not written yet are absent."""
    out = []
    for table, keys in RESULT_TABLES.items():
        if not table_path(table, folder).exists():
            continue
        frame = read_results(table, folder)
        others = [k for k in keys if k not in ("model_name", "extra_info")]
        for (model, extra), group in frame.groupby(["model_name", "extra_info"], sort=True, dropna=False):
            values = "; ".join(f"{k}: {', '.join(sorted(group[k].unique()))}" for k in others)
            out.append({"table": table, "model_name": model, "extra_info": extra, "rows": len(group),
                        "other_keys": values})
    return pd.DataFrame(out, columns=["table", "model_name", "extra_info", "rows", "other_keys"])


def matching(folder: str | Path | None, model: str, extra_info: str | None,
             tables: Sequence[str]) -> dict[str, int]:
    """Rows per table that ``remove`` would delete. Stops with :class:`DataError` when the model has no rows,
    naming the closest model names."""
    found: dict[str, int] = {}
    names: set[str] = set()
    for table in tables:
        if not table_path(table, folder).exists():
            continue
        frame = read_results(table, folder)
        names.update(frame["model_name"].str.strip())
        mask = frame["model_name"].str.strip() == model.strip()
        if extra_info is not None:
            mask &= frame["extra_info"].str.strip() == extra_info.strip()
        if mask.any():
            found[table] = int(mask.sum())
    if not found:
        close = difflib.get_close_matches(model, sorted(names), n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        which = f" with extra_info {extra_info!r}" if extra_info is not None else ""
        raise DataError(f"no rows of model {model!r}{which} in {results_dir(folder)} ({', '.join(tables)}){hint}")
    return found


def _print_summary(frame: pd.DataFrame, folder: Path) -> None:
    if frame.empty:
        print(f"{folder}: no results tables yet")
        return
    for table, group in frame.groupby("table", sort=False):
        keys = ", ".join(RESULT_TABLES[str(table)])
        print(f"{table}.csv ({int(group['rows'].sum())} rows; key: {keys})")
        for row in group.itertuples(index=False):
            extra = f" [extra_info {row.extra_info!r}]" if row.extra_info else ""
            print(f"  {row.model_name}{extra}: {row.rows} rows; {row.other_keys}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="results.sh", description="What the results tables hold, and taking a "
                                "wrong run's rows out of them (a backup of each changed table first).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--results-dir", default=None, help="default: $RESULTS_DIR, else results/")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="models and keys per table")
    rm = sub.add_parser("remove", help="delete a model's rows (a backup of each table first)",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    rm.add_argument("--model", required=True, help="model_name whose rows go")
    rm.add_argument("--extra-info", default=None, help="only rows with this extra_info (default: any)")
    rm.add_argument("--table", choices=sorted(RESULT_TABLES), default=None, help="only this table (default: all)")
    rm.add_argument("--yes", action="store_true", help="do not ask (needed when input is not a terminal)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    folder = results_dir(args.results_dir)
    try:
        if args.command == "list":
            _print_summary(summary(folder), folder)
            return 0
        tables = [args.table] if args.table else list(RESULT_TABLES)
        found = matching(folder, args.model, args.extra_info, tables)
        which = f" (extra_info {args.extra_info!r})" if args.extra_info is not None else ""
        print(f"model {args.model!r}{which}: " + ", ".join(f"{n} rows in {t}.csv" for t, n in found.items()))
        if not args.yes:
            if not sys.stdin.isatty():
                raise DataError("not removed: input is not a terminal; add --yes to confirm")
            if input("remove them? a backup of each table is kept [y/N] ").strip().lower() not in ("y", "yes"):
                print("nothing removed")
                return 1
        match = {"model_name": args.model, **({"extra_info": args.extra_info} if args.extra_info is not None else {})}
        for table in found:
            n, backup = remove_rows(table, match, results_dir=folder)
            print(f"{table}.csv: {n} rows removed; the table as it was: {backup}")
        return 0
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
