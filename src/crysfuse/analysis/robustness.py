"""Robustness to bad text: evaluate a trained run with its texts corrupted (seeded), per strategy × mode × ratio,
and write the table (CSV, JSON) and its plots (``crysfuse robustness``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crysfuse.analysis.plots import lines_by_group
from crysfuse.data.corruption import Corruption, corrupt_text
from crysfuse.data.dataset import CrystalData, with_text
from crysfuse.data.pipeline import PreparedData, prepare
from crysfuse.data.records import StructureRecord
from crysfuse.data.sources import load_config_records
from crysfuse.figures import save_figure
from crysfuse.io import write_csv_atomic, write_json_atomic
from crysfuse.predict import predict_items, regression_metrics
from crysfuse.rundir import LoadedModel, load_run, read_splits, splits_path
from crysfuse.rundir.layout import ROBUSTNESS_CSV_FILE, ROBUSTNESS_JSON_FILE, robustness_plot_file

logger = logging.getLogger(__name__)


@dataclass
class EvaluationSet:
    """A loaded run with the prepared items of one split (clean texts kept for corrupting) and the records they
    were made from."""

    loaded: LoadedModel
    ids: list[str]
    prepared: PreparedData
    records: list[StructureRecord]

    @property
    def items(self) -> list[CrystalData]:
        return [self.prepared.items[i] for i in self.ids]


def load_evaluation_set(
    run_dir: str | Path, *, split: str = "test", data: str | None = None, limit: int | None = None
) -> EvaluationSet:
    """Load ``run_dir`` and prepare the records of its ``split`` (from ``splits.json``) from ``data``
    (default: the run's own data source)."""
    loaded = load_run(run_dir)
    config = loaded.config
    splits = read_splits(run_dir)
    if split not in splits:
        raise ValueError(f"split '{split}' not in {splits_path(run_dir)}: {sorted(splits)}")
    wanted = set(splits[split][:limit] if limit else splits[split])
    records = load_config_records(config, path=data, ids=wanted).records
    prepared = prepare(records, config, uses_text=loaded.model.uses_text)
    ids = [i for i in splits[split] if i in prepared.items]
    return EvaluationSet(loaded=loaded, ids=ids, prepared=prepared, records=records)


def evaluate(evaluation: EvaluationSet, corruption: Corruption | None, *, seed: int = 0,
             batch_size: int = 64) -> dict[str, Any]:
    """Metrics and mean gate values with the texts corrupted by ``corruption`` (``None``: clean)."""
    items = evaluation.items
    prepared = evaluation.prepared
    if corruption is not None and prepared.text_side is not None:
        encoder = prepared.text_side.encoder
        tokenizer = encoder.tokenizer if corruption.strategy == "random_token" else None
        texts = [
            corrupt_text(prepared.texts[i], corruption, record_id=i, seed=seed, mask_token=encoder.mask_token,
                         tokenizer=tokenizer)
            for i in evaluation.ids
        ]
        items = [with_text(item, enc) for item, enc in zip(items, prepared.text_side.text_inputs(texts))]
    predictions = predict_items(evaluation.loaded.model, evaluation.ids, items, batch_size=batch_size)
    row: dict[str, Any] = regression_metrics(predictions.target, predictions.prediction)
    row["n"] = len(evaluation.ids)
    for key, values in sorted(predictions.gates.items()):
        row[f"{key}_mean"] = float(np.mean(values)) if len(values) else float("nan")
    return row


def robustness_table(
    evaluation: EvaluationSet,
    strategies: list[str],
    modes: list[str],
    ratios: list[float],
    *,
    seed: int = 0,
    batch_size: int = 64,
) -> list[dict[str, Any]]:
    """One row per strategy × mode × ratio (ratio 0 evaluated once, from clean text; a model without text
    is evaluated once in all, since corrupting text cannot change its predictions)."""
    clean = evaluate(evaluation, None, seed=seed, batch_size=batch_size)
    text_blind = evaluation.prepared.text_side is None
    rows = []
    for strategy in strategies:
        for mode in modes:
            for ratio in ratios:
                corruption = Corruption(strategy, mode, float(ratio))
                unchanged = ratio == 0 or text_blind
                result = clean if unchanged else evaluate(evaluation, corruption, seed=seed, batch_size=batch_size)
                rows.append({"strategy": strategy, "mode": mode, "ratio": float(ratio), **result})
                logger.info("%s: MAE %.4f", corruption.label, result["mae"])
    return rows


def write_robustness(out: str | Path, rows: list[dict[str, Any]], *, run: str | Path, split: str,
                     seed: int) -> Path:
    """``robustness.csv``, ``robustness.json`` and the plots (MAE and every gate's mean against the ratio, per
    strategy/mode) in ``out``; returns the CSV's path."""
    out = Path(out)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    write_csv_atomic(out / ROBUSTNESS_CSV_FILE, columns, ([row.get(c, "") for c in columns] for row in rows))
    write_json_atomic(out / ROBUSTNESS_JSON_FILE, {"run": str(run), "split": split, "seed": seed, "rows": rows})
    save_figure(lines_by_group(rows, x="ratio", y="mae", group=["strategy", "mode"],
                               title="MAE under text corruption", ylabel="MAE"), out / robustness_plot_file("mae"))
    gate_keys = [c for c in columns if c.endswith("_mean") and c.count("_") >= 1 and c not in ("mae",)]
    for key in gate_keys:
        save_figure(lines_by_group(rows, x="ratio", y=key, group=["strategy", "mode"],
                                   title=f"{key} under text corruption", ylabel=key),
                    out / robustness_plot_file(key))
    return out / ROBUSTNESS_CSV_FILE

