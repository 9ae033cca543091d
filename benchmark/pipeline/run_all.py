"""``./scripts/run_all.sh``: one model through splits -> generation -> image quality -> utility -> privacy -> report.

The whole pipeline comes from one YAML file (``--config FILE``; with no file and neither ``REAL_CSV`` nor
``SYNTHETIC_DIR`` set, ``configs/demo.yaml``) and/or the environment. Each stage runs as a subprocess of its own
script in ``scripts/`` - exactly the command a user would type, printed before it runs - with its output streamed.
A failing stage stops the run with that stage's exit status; later stages do not run.

Stages whose outputs are complete are skipped:

* ``splits``: the split CSV and its ``<csv>.json`` sidecar exist and parse, and the stage's marker matches;
* ``generation``: the synthetic set reads back, its manifest says complete with every planned image, and the
  marker matches;
* ``image_quality`` / ``utility`` / ``privacy``: every result row the stage wrote last time (key, ``run_id``,
  ``timestamp``) is still in the results CSV, and the marker matches;
* ``report``: ``report.md`` and ``report.html`` exist, and the marker matches (its fingerprint covers the results
  CSVs, so new rows from any run re-render it).

The marker ``<work_dir>/run_all/<stage>.json`` records a fingerprint of the stage's resolved command, the inputs it
names (content hash of files up to 16 MiB, else size + mtime; size + mtime of a folder's top-level entries), the
environment variables the scripts read as defaults, and the config's ``env``. A changed setting, a rebuilt upstream
output, or deleted result rows rerun the stage (the run says which flag or input changed); an unchanged config
skips it; ``--force`` reruns it anyway. Before generating with changed settings into a folder that run_all's
previous generation filled, that set is moved aside to ``<out>.replaced-<time>`` (``generate.sh`` refuses to
continue a set made with other settings). A split CSV or synthetic set *given* in the config (``splits.csv``,
``generation.synthetic``) is only checked, never built.

Config file (every key optional unless said; unknown keys are errors)::

    model_name: NAME                 # required (env MODEL_NAME): the results rows' model_name
    extra_info: TEXT                 # env EXTRA_INFO; default ""
    results_dir: DIR                 # env RESULTS_DIR; default results
    work_dir: DIR                    # env SYNTHCXR_WORK_DIR; default work/<model_name>: markers, built models
    env: {VAR: value}                # extra environment for every stage (e.g. NUM_WORKERS, SEED)
    splits:      {enabled, csv: CSV (existing split; env REAL_CSV) | builder: padchest|chexgenbench|csv|folder|demo,
                  out: CSV, args}
    generation:  {enabled, synthetic: DIR (existing set; env SYNTHETIC_DIR) | model: M | images: FOLDER,
                  split: test, out: DIR, num_processes (env NUM_PROCESSES), args}
    image_quality: {enabled, features: xrv, weights: W, per_class: false, args}
    utility:     {enabled, stage: pretrained|retrained|all, classifier: KEY (env CLASSIFIER), args}
    privacy:     {enabled (default false), reid_model: PATH | reid_train: true, alignment_model: NAME_OR_DIR,
                  args}              # ./scripts/privacy_metrics.sh; needs a re-id and/or an alignment model
    report:      {enabled, out: DIR (default <results_dir>/report), args}

``args`` are the stage script's other flags, as a mapping (``{steps: 5, per-class: true}`` -> ``--steps 5
--per-class``; ``false`` / null leave a flag out; a list repeats it) or as a list of words. Relative paths are
relative to the current directory. ``builtin:demo-classifier`` (the demo's DenseNet-121, trained on a phantom
population disjoint from the demo data and cached under ``assets/cache``; trained on first use) may stand for
``utility.classifier`` and ``image_quality.weights``; ``builtin:tiny-ddpm`` (a tiny untrained class-conditional
DDPM at 32 px, built into ``<work_dir>/models/``) for ``generation.model``.

Precedence: ``--set``, ``--results-dir`` and ``--work-dir`` flags > the config file > environment variables >
defaults. ``CLASSES``, ``IMAGE_ROOT``, ``BATCH_SIZE``, ``NUM_WORKERS`` and ``SEED`` are not read here: the stage
scripts read them themselves (and they are part of every fingerprint).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from benchmark.pipeline.config import STAGES, ConfigError, load_config
from benchmark.pipeline.runner import Runner


def _stage_names(text: str | None, flag: str, allow_all: bool = False) -> list[str]:
    if not text:
        return []
    names = [n.strip().replace("-", "_") for n in text.split(",") if n.strip()]
    known = (*STAGES, "all") if allow_all else STAGES
    for name in names:
        if name not in known:
            raise ConfigError(f"{flag} {name!r}: not a stage ({', '.join(known)})")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_all.sh", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--config", help="YAML config (default: configs/demo.yaml unless REAL_CSV or SYNTHETIC_DIR "
                                         "is set; 'none': the environment only)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set utility.args.epochs=2 (repeatable)")
    parser.add_argument("--results-dir", help="overrides results_dir")
    parser.add_argument("--work-dir", help="overrides work_dir")
    parser.add_argument("--only", help="run (or skip) only these stages, comma separated")
    parser.add_argument("--skip", help="leave these stages out, comma separated")
    parser.add_argument("--force", help="rerun these stages even if complete (comma separated, or all)")
    parser.add_argument("--dry-run", action="store_true", help="print what would run or be skipped, run nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, args.set, results_dir=args.results_dir, work_dir=args.work_dir)
        runner = Runner(config, only=_stage_names(args.only, "--only"), skip=_stage_names(args.skip, "--skip"),
                        force=_stage_names(args.force, "--force", allow_all=True), dry_run=args.dry_run)
    except ConfigError as exc:
        print(f"run_all: config error: {exc}", file=sys.stderr)
        return 2
    return runner.run()


if __name__ == "__main__":
    sys.exit(main())
