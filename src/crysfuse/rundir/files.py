"""Reading and writing the records of a run directory: summary, splits, per-epoch metrics, predictions,
rejections, and the results analyses leave in it (gate statistics, robustness rows)."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crysfuse.data.records import Rejection
from crysfuse.io import write_csv_atomic, write_json_atomic, write_text_atomic
from crysfuse.predict import Predictions
from crysfuse.rundir.checkpoint import read_json_file
from crysfuse.rundir.layout import (
    CONFIG_FILE,
    GATE_STATISTICS_FILE,
    METRICS_FILE,
    REJECTIONS_FILE,
    ROBUSTNESS_DIR,
    ROBUSTNESS_JSON_FILE,
    SPLITS_FILE,
    SUMMARY_FILE,
    predictions_file,
)

# -------------------------------------------------------------------------------------------------- summary


def has_summary(run_dir: Path) -> bool:
    """Whether the run wrote its ``summary.json`` (it does so last)."""
    return (Path(run_dir) / SUMMARY_FILE).is_file()


def read_summary(run_dir: Path) -> dict[str, Any]:
    """``summary.json``: metrics, sizes and settings of a finished run."""
    return json.loads((Path(run_dir) / SUMMARY_FILE).read_text(encoding="utf-8"))


def write_summary(run_dir: Path, summary: Mapping[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / SUMMARY_FILE, dict(summary))


def read_config_dict(run_dir: Path) -> dict[str, Any]:
    """``config.json`` as plain JSON (also for runs whose config a newer crysfuse would not accept)."""
    return json.loads((Path(run_dir) / CONFIG_FILE).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------ splits


def write_splits(run_dir: Path, splits: Mapping[str, list[str]]) -> None:
    """``splits.json``: ``{"train": [ids], "val": [...], "test": [...]}``."""
    write_json_atomic(Path(run_dir) / SPLITS_FILE, dict(splits))


def read_splits(run_dir: Path) -> dict[str, list[str]]:
    """``splits.json``; an unreadable file is a :class:`~crysfuse.rundir.checkpoint.CheckpointError`."""
    return read_json_file(Path(run_dir) / SPLITS_FILE)


def splits_path(run_dir: Path) -> Path:
    return Path(run_dir) / SPLITS_FILE


# ----------------------------------------------------------------------------------------------- metrics


def metrics_path(run_dir: Path) -> Path:
    """``metrics.jsonl``: one JSON line per epoch (appended while training)."""
    return Path(run_dir) / METRICS_FILE


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The epochs in ``metrics.jsonl`` (``[]`` without the file); reading stops at a line a crash cut off."""
    path = metrics_path(run_dir)
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def truncate_metrics(run_dir: Path, last_epoch: int) -> None:
    """Drop ``metrics.jsonl`` lines of epochs after ``last_epoch`` (written before a crash, then redone)."""
    path = metrics_path(run_dir)
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("epoch", -1) <= last_epoch:
                kept.append(line)
        except json.JSONDecodeError:
            break  # a line cut by the crash: nothing after it can be trusted
    write_text_atomic(path, "".join(f"{line}\n" for line in kept))


def clear_metrics(run_dir: Path) -> None:
    metrics_path(run_dir).unlink(missing_ok=True)


# ----------------------------------------------------------------------------------- predictions, rejections


def predictions_path(run_dir: Path, split: str) -> Path:
    return Path(run_dir) / predictions_file(split)


def write_predictions_csv(path: Path, predictions: Predictions) -> None:
    """``id,target,prediction[,<gate>...]`` with full float precision; predictions are never clipped."""
    keys = sorted(predictions.gates)
    rows = (
        [record_id, repr(float(t)), repr(float(p)), *(repr(float(predictions.gates[k][i])) for k in keys)]
        for i, (record_id, t, p) in enumerate(zip(predictions.ids, predictions.target, predictions.prediction))
    )
    write_csv_atomic(path, ["id", "target", "prediction", *keys], rows)


def read_test_errors(run_dir: Path) -> dict[str, float]:
    """Absolute test error per record id, from the test predictions (:func:`read_predictions`).

    Raises:
        FileNotFoundError: The run has no test predictions.
    """
    return errors_by_id(read_test_predictions(run_dir))


def read_test_predictions(run_dir: Path) -> Predictions:
    """:func:`read_predictions` of the test split, which a finished run always has.

    Raises:
        FileNotFoundError: It has none.
    """
    predictions = read_predictions(run_dir, "test")
    if predictions is None:
        raise FileNotFoundError(f"{predictions_path(run_dir, 'test')} (or .gz) is missing")
    return predictions


def errors_by_id(predictions: Predictions) -> dict[str, float]:
    """Absolute error per record id."""
    errors = np.abs(predictions.prediction - predictions.target)
    return {record_id: float(e) for record_id, e in zip(predictions.ids, errors)}


def read_predictions(run_dir: Path, split: str) -> Predictions | None:
    """``predictions_<split>.csv`` as :class:`Predictions` (gates by column), or ``None`` when absent. A gzipped
    copy (``predictions_<split>.csv.gz``, how studies commit per-crystal predictions) is read when the plain
    file is not there."""
    path = predictions_path(run_dir, split)
    gzipped = path.with_name(path.name + ".gz")
    if path.is_file():
        handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115 (closed below)
    elif gzipped.is_file():
        handle = gzip.open(gzipped, "rt", newline="", encoding="utf-8")  # noqa: SIM115
    else:
        return None
    with handle:
        rows = list(csv.DictReader(handle))
    keys = [k for k in (rows[0] if rows else {}) if k not in ("id", "target", "prediction")]
    return Predictions(ids=[r["id"] for r in rows], target=np.array([float(r["target"]) for r in rows]),
                       prediction=np.array([float(r["prediction"]) for r in rows]),
                       gates={k: np.array([float(r[k]) for r in rows]) for k in keys})


def rejections_path(run_dir: Path) -> Path:
    return Path(run_dir) / REJECTIONS_FILE


def write_rejections(path: Path, rejections: Iterable[Rejection]) -> None:
    """The rejection manifest: ``id,stage,reason`` for every row that could not be used."""
    write_csv_atomic(path, ["id", "stage", "reason"], ([r.id, r.stage, r.reason] for r in rejections))


def summarize_rejections(rejections: Sequence[Rejection]) -> str:
    """One line: total and counts per stage."""
    if not rejections:
        return "0 records rejected"
    stages: dict[str, int] = {}
    for rejection in rejections:
        stages[rejection.stage] = stages.get(rejection.stage, 0) + 1
    return f"{len(rejections)} records rejected ({', '.join(f'{k}: {v}' for k, v in sorted(stages.items()))})"


# ----------------------------------------------------------------------------- results of the analyses


def read_gate_statistics(run_dir: Path) -> dict[str, Any] | None:
    """The gate monitor's ``gate_statistics.json`` (``None`` when the run has none)."""
    path = Path(run_dir) / GATE_STATISTICS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def robustness_results_dir(run_dir: Path) -> Path:
    """Where a comparison matrix evaluates a cell's robustness: ``run_dir/robustness``."""
    return Path(run_dir) / ROBUSTNESS_DIR


def has_robustness(run_dir: Path) -> bool:
    return (robustness_results_dir(run_dir) / ROBUSTNESS_JSON_FILE).exists()


def read_robustness_rows(run_dir: Path) -> list[dict[str, Any]] | None:
    """The rows of ``run_dir/robustness/robustness.json`` (``None`` when it was not evaluated)."""
    path = robustness_results_dir(run_dir) / ROBUSTNESS_JSON_FILE
    return json.loads(path.read_text(encoding="utf-8"))["rows"] if path.exists() else None
