"""Optional experiment tracking: every results row written by :func:`benchmark.core.results.upsert_rows` is also
logged to MLflow when ``MLFLOW_TRACKING_URI`` is set. Without that variable nothing happens and mlflow is never
imported.

Layout in MLflow (experiment ``$MLFLOW_EXPERIMENT_NAME``, default ``synthcxr-bench``): one parent run per write
(named ``<table>/<harness run_id>``) and one nested run per results row, named by the row's key. A row run holds
the key columns and every other text column as params (``table`` and the key columns also as tags, for
filtering), and every finite numeric column as a metric. The results CSV stays the record: it is written first,
so a tracking failure raises :class:`TrackingError` after nothing has been lost.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
DEFAULT_EXPERIMENT = "synthcxr-bench"
MAX_PARAM_CHARS = 500  # MLflow's smallest param-value limit across versions
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


class TrackingError(RuntimeError):
    """Logging to MLflow failed; the rows are safe in the results CSV named in the message."""


def tracking_enabled() -> bool:
    """True when ``MLFLOW_TRACKING_URI`` is set to a non-empty value."""
    return bool(os.environ.get(TRACKING_URI_ENV, "").strip())


def mlflow_key(name: str) -> str:
    """A column name as a valid MLflow param / metric / tag key (other characters become ``_``)."""
    return _KEY_UNSAFE.sub("_", name)[:250] or "_"


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def split_row(row: Mapping[str, str], key_columns: Sequence[str]) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, params) of one results row: finite numbers are metrics; key columns, provenance columns (a commit or
    hash may look like a number) and other non-empty text are params (text cut to ``MAX_PARAM_CHARS``)."""
    from benchmark.core.provenance import PROVENANCE_COLUMNS

    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    always_text = {*key_columns, *PROVENANCE_COLUMNS}
    for column, text in row.items():
        value = None if column in always_text or column.startswith("version_") else _number(text)
        if value is not None:
            metrics[mlflow_key(column)] = value
        elif text != "" or column in key_columns:
            params[mlflow_key(column)] = str(text)[:MAX_PARAM_CHARS]
    return metrics, params


def log_rows(table: str, key_columns: Sequence[str], rows: Sequence[Mapping[str, str]], results_csv: Path) -> int:
    """Log ``rows`` (as stored: every value text) of ``table`` to MLflow; returns the number of row runs (0 when
    tracking is off). Raises :class:`TrackingError` naming ``results_csv`` when mlflow is missing or fails."""
    if not tracking_enabled() or not rows:
        return 0
    uri = os.environ[TRACKING_URI_ENV].strip()
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise TrackingError(f"{TRACKING_URI_ENV}={uri} is set but mlflow is not installed (pip install "
                            f"mlflow-skinny); the rows are saved in {results_csv}") from exc
    try:
        client = MlflowClient(tracking_uri=uri)
        name = os.environ.get(EXPERIMENT_ENV, "").strip() or DEFAULT_EXPERIMENT
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
        harness_run = rows[0].get("run_id", "")
        parent = client.create_run(experiment_id, run_name=f"{table}/{harness_run}",
                                   tags={"table": table, "harness_run_id": harness_run,
                                         "results_csv": str(results_csv)})
        stamp = int(time.time() * 1000)
        for row in rows:
            metrics, params = split_row(row, key_columns)
            key_tags = {f"key.{mlflow_key(c)}": str(row.get(c, ""))[:MAX_PARAM_CHARS] for c in key_columns}
            run_name = " | ".join(str(row.get(c, "")) for c in key_columns if row.get(c, ""))
            child = client.create_run(experiment_id, run_name=run_name[:250],
                                      tags={"mlflow.parentRunId": parent.info.run_id, "table": table, **key_tags})
            client.log_batch(child.info.run_id,
                             metrics=[Metric(k, v, stamp, 0) for k, v in metrics.items()],
                             params=[Param(k, v) for k, v in params.items()],
                             tags=[RunTag("harness_run_id", str(row.get("run_id", "")))])
            client.set_terminated(child.info.run_id)
        client.set_terminated(parent.info.run_id)
    except TrackingError:
        raise
    except Exception as exc:  # mlflow raises many types (MlflowException, OSError, HTTP errors)
        raise TrackingError(f"logging {len(rows)} {table} row(s) to MLflow at {uri} failed ({exc}); the rows are "
                            f"saved in {results_csv}") from exc
    return len(rows)
