"""``train(config)``: data → graphs → text → model → Lightning fit (validation-only model selection) →
a self-contained run directory. The CLI's ``crysfuse train`` calls this same function."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.loggers import TensorBoardLogger

from crysfuse.checkpoint import WEIGHTS_FILE, load_run, write_meta
from crysfuse.config import Config
from crysfuse.data.dataset import make_loader
from crysfuse.data.pipeline import PreparedData, prepare
from crysfuse.data.sources import Rejection, load_records
from crysfuse.data.splits import Split, seeded_split, split_from_file
from crysfuse.io import write_csv_atomic, write_json_atomic
from crysfuse.models.crysfuse import CrysFuseModel, model_uses_text
from crysfuse.predict import predict_items, regression_metrics, write_predictions_csv
from crysfuse.train.augment import TextCorruptionDataset, corrupted_alternatives
from crysfuse.train.callbacks import BestWeights, MetricsJsonl
from crysfuse.train.module import CrysFuseLightning

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """Where the run went and its summary (the content of ``summary.json``)."""

    run_dir: Path
    summary: dict[str, Any]


def write_rejections(path: Path, rejections: list[Rejection]) -> None:
    """The rejection manifest: ``id,stage,reason`` for every row that could not be used."""
    write_csv_atomic(path, ["id", "stage", "reason"], ([r.id, r.stage, r.reason] for r in rejections))


def summarize_rejections(rejections: list[Rejection]) -> str:
    """One line: total and counts per stage."""
    if not rejections:
        return "0 records rejected"
    stages: dict[str, int] = {}
    for rejection in rejections:
        stages[rejection.stage] = stages.get(rejection.stage, 0) + 1
    return f"{len(rejections)} records rejected ({', '.join(f'{k}: {v}' for k, v in sorted(stages.items()))})"


def make_split(config: Config, ids: list[str]) -> Split:
    """The split file when given, else a seeded split of the usable ids."""
    if config.data.split_file:
        return split_from_file(config.data.split_file, ids)
    return seeded_split(ids, config.data.split_fractions, config.data.split_seed)


def training_items(config: Config, ids: list[str], items: list, prepared: PreparedData):  # noqa: ANN201
    """The training items, wrapped in text-corruption augmentation when it is switched on."""
    settings = config.train.text_corruption
    if settings.probability <= 0 or prepared.text_side is None:
        return items
    alternatives = corrupted_alternatives(
        ids, prepared.items, prepared.texts, prepared.text_side, settings, config.train.seed
    )
    return TextCorruptionDataset(items, alternatives, settings.probability, config.train.seed)


def train(config: Config) -> RunResult:
    """Train one model as configured and write its run directory (see the README for the file list)."""
    run_dir = Path(config.experiment.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    config.save(run_dir / "config.json")

    loaded = load_records(config.data.path, config.data.target, limit=config.data.limit)
    uses_text = model_uses_text(config)
    prepared = prepare(loaded.records, config, uses_text=uses_text)
    rejections = loaded.rejections + prepared.rejections
    write_rejections(run_dir / "rejections.csv", rejections)
    logger.info("%s; manifest: %s", summarize_rejections(rejections), run_dir / "rejections.csv")

    split = make_split(config, list(prepared.items))
    write_json_atomic(run_dir / "splits.json", split.to_dict())
    items = {name: [prepared.items[i] for i in getattr(split, name)] for name in ("train", "val", "test")}
    logger.info("split: %d train, %d val, %d test", *(len(v) for v in items.values()))

    model = CrysFuseModel(config, dim_text=prepared.text.dim_text)
    train_targets = np.array([float(d.y) for d in items["train"]])
    model.set_target_scaling(float(train_targets.mean()), float(train_targets.std()))
    write_meta(run_dir, dim_text=prepared.text.dim_text, encoder_id=prepared.text.encoder_id)

    best = BestWeights(run_dir)
    callbacks: list[L.Callback] = [MetricsJsonl(run_dir / "metrics.jsonl"), best]
    if config.train.patience is not None:
        callbacks.append(EarlyStopping(monitor="val_mae", mode="min", patience=config.train.patience))
    trainer = L.Trainer(
        max_epochs=config.train.epochs,
        accelerator=config.train.accelerator,
        devices=config.train.devices,
        strategy=config.train.strategy,
        num_nodes=config.train.num_nodes,
        precision=config.train.precision,
        gradient_clip_val=config.train.gradient_clip or None,
        deterministic=config.train.deterministic,
        callbacks=callbacks,
        logger=TensorBoardLogger(str(run_dir), name="tensorboard", version=""),
        enable_checkpointing=False,
        enable_progress_bar=config.train.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
    )
    train_items = training_items(config, split.train, items["train"], prepared)
    loaders = {
        name: make_loader(data, batch_size=config.train.batch_size, shuffle=name == "train",
                          num_workers=config.train.num_workers, seed=config.train.seed)
        for name, data in (("train", train_items), ("val", items["val"]))
    }
    trainer.fit(CrysFuseLightning(model, config), loaders["train"], loaders["val"])
    train_seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return RunResult(run_dir=run_dir, summary={})

    best_model = load_run(run_dir).model
    metrics = {}
    for name in ("val", "test"):
        ids = getattr(split, name)
        predictions = predict_items(best_model, ids, items[name], batch_size=config.train.batch_size)
        write_predictions_csv(run_dir / f"predictions_{name}.csv", predictions)
        metrics[name] = regression_metrics(predictions.target, predictions.prediction)

    summary = {
        "val_mae": metrics["val"]["mae"],
        "test_mae": metrics["test"]["mae"],
        "val_metrics": metrics["val"],
        "test_metrics": metrics["test"],
        "n_params": model.num_parameters(),
        "n_params_fusion": model.num_fusion_parameters(),
        "train_seconds": round(train_seconds, 2),
        "epochs": trainer.current_epoch,
        "best_epoch": best.best_epoch,
        "fusion": config.fusion.name,
        "target": config.data.target,
        "data": config.data.path,
        "seed": config.train.seed,
        "n_train": len(split.train),
        "n_val": len(split.val),
        "n_test": len(split.test),
        "n_rejected": len(rejections),
        "text_missing": prepared.text.num_missing,
        "text_truncated": prepared.text.num_truncated,
        "encoder_id": prepared.text.encoder_id,
        "weights": WEIGHTS_FILE,
    }
    write_json_atomic(run_dir / "summary.json", summary)
    logger.info("run %s: val MAE %.4f, test MAE %.4f (best epoch %d)",
                run_dir, summary["val_mae"], summary["test_mae"], best.best_epoch)
    return RunResult(run_dir=run_dir, summary=summary)
