"""``train(config)``: data → graphs → text → model → Lightning fit (validation-only model selection) →
a self-contained run directory (its layout: :mod:`crysfuse.rundir`). The CLI's ``crysfuse train`` calls this
same function."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.loggers import TensorBoardLogger

from crysfuse import rundir
from crysfuse.config import Config
from crysfuse.data.dataset import CrystalData, make_loader
from crysfuse.data.pipeline import PreparedData, prepare
from crysfuse.data.records import Rejection
from crysfuse.data.sources import load_config_records
from crysfuse.data.splits import Split, make_split, split_ids
from crysfuse.data.store import item_list, item_targets
from crysfuse.models.crysfuse import CrysFuseModel, model_uses_text
from crysfuse.models.targets import transformed_targets
from crysfuse.predict import predict_items, regression_metrics, warn_if_bf16_is_emulated
from crysfuse.rundir.layout import TENSORBOARD_DIR
from crysfuse.text.finetune import check_finetune
from crysfuse.training.augment import TextCorruptionDataset, corrupted_alternatives
from crysfuse.training.callbacks import BestWeights, EpochTimeEstimate, MetricsJsonl, ReleaseMemory
from crysfuse.training.init_from import check_init_source, initialize_graph_side
from crysfuse.training.module import CrysFuseLightning
from crysfuse.training.monitor import GateMonitor
from crysfuse.training.resume import ResumeCheckpoint, RngState, check_resume_state

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class RunResult:
    """Where the run went and its summary (the content of ``summary.json``)."""

    run_dir: Path
    summary: dict[str, Any]


@dataclass
class RunData:
    """The prepared data of a run: items per split, the split itself and every rejection."""

    prepared: PreparedData
    split: Split
    items: dict[str, Sequence[CrystalData]]
    rejections: list[Rejection]


def training_items(config: Config, ids: list[str], items: list, prepared: PreparedData):
    """The training items, wrapped in text-corruption augmentation when it is switched on."""
    settings = config.train.text_corruption
    if settings.probability <= 0 or prepared.text_side is None:
        return items
    alternatives = corrupted_alternatives(
        ids, prepared.items, prepared.texts, prepared.text_side, settings, config.train.seed
    )
    return TextCorruptionDataset(items, alternatives, settings.probability, config.train.seed)


def lightning_strategy(name: str) -> str:
    """Lightning strategy for ``train.strategy``. Plain ``ddp`` becomes ``ddp_find_unused_parameters_true``:
    ALIGNN's last layers produce edge/triplet updates that never reach the loss (their BatchNorm parameters
    are part of the reference parameter count), which plain DDP rejects."""
    return "ddp_find_unused_parameters_true" if name == "ddp" else name


def is_primary_process() -> bool:
    """True in the process that owns the run directory (global rank 0; every process when not distributed)."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):  # torchrun / SLURM / Lightning's own launcher
        if name in os.environ:
            return os.environ[name] == "0" and os.environ.get("NODE_RANK", "0") == "0"
    return os.environ.get("NODE_RANK", "0") == "0"


def train(config: Config, *, resume: bool | None = None) -> RunResult:
    """Train one model as configured and write its run directory (see the README for the file list).

    Args:
        config: The run's config; ``experiment.run_dir`` is where everything goes.
        resume: ``True`` insists on continuing an interrupted run; ``None`` (default) continues one when the
            run directory holds one, skips a finished run with the same config, and starts fresh otherwise.

    Raises:
        RunDirectoryError: Another process trains into the directory, or it holds a different run.
    """
    check_finetune(config.text)  # before any data is prepared
    run_dir = Path(config.experiment.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not is_primary_process():
        return _train_in_run_dir(config, run_dir, resume_from=None, primary=False)
    with rundir.RunLock(run_dir):
        decision = decide_resume(run_dir, config, resume)
        if decision is None and config.train.init_from:  # a fresh start: the source must be there now
            check_init_source(config.train.init_from, fusion=config.fusion.name)
        if decision == "finished":
            summary = rundir.read_summary(run_dir)
            logger.info("run %s already finished (val MAE %.4f); nothing to do", run_dir, summary["val_mae"])
            return RunResult(run_dir=run_dir, summary=summary)
        rundir.write_status(run_dir, "running", pid=os.getpid())
        result = _train_in_run_dir(config, run_dir, resume_from=decision, primary=True)
        rundir.write_status(run_dir, "finished")
    return result


@dataclass
class ResumePoint:
    """The saved training state to continue from, and the training seconds it already cost."""

    checkpoint: Path
    seconds: float


def decide_resume(run_dir: Path, config: Config, resume: bool | None) -> ResumePoint | str | None:
    """``"finished"``, where to resume from, or ``None`` for a fresh start (old partial files cleared)."""
    saved = rundir.saved_config(run_dir)
    if saved is not None:
        differences = config_differences(saved, config)
        if differences:
            raise rundir.RunDirectoryError(
                f"{run_dir} holds a run with a different config ({'; '.join(differences[:5])}); "
                "choose another --run-dir"
            )
    if rundir.is_finished(run_dir):
        if resume:
            raise rundir.RunDirectoryError(f"{run_dir} is a finished run: nothing to resume")
        return "finished"
    checkpoint = rundir.resume_checkpoint_path(run_dir)
    if checkpoint is not None:
        epoch, seconds = check_resume_state(checkpoint)
        rundir.truncate_metrics(run_dir, epoch)
        logger.info("resuming %s after epoch %d (%.0f s of training so far)", run_dir, epoch, seconds)
        return ResumePoint(checkpoint, seconds)
    if resume:
        raise rundir.RunDirectoryError(f"{run_dir} has no saved training state to resume from")
    rundir.clear_metrics(run_dir)
    return None


IGNORED_CONFIG_KEYS = ("train.progress_bar", "train.num_workers")


def config_differences(old: Config, new: Config) -> list[str]:
    """Dotted keys whose values differ (ignoring settings that cannot change results)."""
    def flatten(data: dict, prefix: str = "") -> dict:
        flat = {}
        for key, value in data.items():
            if isinstance(value, dict):
                flat.update(flatten(value, f"{prefix}{key}."))
            else:
                flat[f"{prefix}{key}"] = value
        return flat

    a, b = flatten(old.to_dict()), flatten(new.to_dict())
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in IGNORED_CONFIG_KEYS and a.get(k) != b.get(k)]


def _train_in_run_dir(
    config: Config, run_dir: Path, *, resume_from: ResumePoint | None, primary: bool
) -> RunResult:
    started = time.perf_counter() - (resume_from.seconds if resume_from else 0.0)
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    if primary:
        rundir.save_config(run_dir, config)
    data = _prepare_data(config, run_dir, primary=primary)
    model = CrysFuseModel(config, dim_text=data.prepared.text.dim_text)
    model.set_target_scaling(*target_scaling(config, item_targets(data.items["train"])))
    if config.train.init_from and resume_from is None:  # a resumed run's checkpoint holds its weights
        initialize_graph_side(model, config.train.init_from)
    if primary:
        rundir.write_meta(run_dir, dim_text=data.prepared.text.dim_text, encoder_id=data.prepared.text.encoder_id)

    best = BestWeights(run_dir, select=config.train.select)
    trainer = _trainer(config, run_dir, _callbacks(config, run_dir, best, started))
    loaders = {
        name: make_loader(items, batch_size=config.train.batch_size, shuffle=name == "train",
                          num_workers=config.train.num_workers, seed=config.train.seed,
                          drop_last=name == "train" and config.train.drop_last)
        for name, items in (("train", training_items(config, data.split.train, data.items["train"], data.prepared)),
                            ("val", data.items["val"]))
    }
    trainer.fit(CrysFuseLightning(model, config), loaders["train"], loaders["val"],
                ckpt_path=resume_from.checkpoint if resume_from else None, weights_only=True)
    train_seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return RunResult(run_dir=run_dir, summary={})

    metrics = _evaluate_best(run_dir, data, batch_size=config.train.batch_size)
    summary = _summary(config, model, data, metrics, train_seconds=train_seconds, epochs=trainer.current_epoch,
                       best_epoch=best.best_epoch)
    summary["time_estimate"] = rundir.read_status(run_dir).get("estimate")  # EpochTimeEstimate's, this fit's
    rundir.write_summary(run_dir, summary)
    logger.info("run %s: val MAE %.4f, test MAE %.4f (best epoch %d)",
                run_dir, summary["val_mae"], summary["test_mae"], best.best_epoch)
    return RunResult(run_dir=run_dir, summary=summary)


def target_scaling(config: Config, train_targets: Sequence[float]) -> tuple[float, float]:
    """Mean and std of the transformed training targets (``data.target_transform``), or ``(0, 1)`` without
    ``data.standardize_target``."""
    values = transformed_targets(config.data.target_transform, np.array(train_targets, dtype=float))
    if not config.data.standardize_target:
        return 0.0, 1.0
    return float(values.mean()), float(values.std())


def _prepare_data(config: Config, run_dir: Path, *, primary: bool) -> RunData:
    """Records → items of the run's split; the primary process writes the rejections and the split."""
    loaded = load_config_records(config, ids=split_ids(config))
    prepared = prepare(loaded.records, config, uses_text=model_uses_text(config))
    rejections = loaded.rejections + prepared.rejections
    split = make_split(config, list(prepared.items))
    if primary:
        manifest = rundir.rejections_path(run_dir)
        rundir.write_rejections(manifest, rejections)
        logger.info("%s; manifest: %s", rundir.summarize_rejections(rejections), manifest)
        rundir.write_splits(run_dir, split.to_dict())
    items = {name: item_list(prepared.items, getattr(split, name)) for name in SPLIT_NAMES}
    logger.info("split: %d train, %d val, %d test", *(len(v) for v in items.values()))
    return RunData(prepared=prepared, split=split, items=items, rejections=rejections)


def _callbacks(config: Config, run_dir: Path, best: BestWeights, started: float) -> list[L.Callback]:
    callbacks: list[L.Callback] = [MetricsJsonl(rundir.metrics_path(run_dir)), best, RngState(), ReleaseMemory(),
                                   ResumeCheckpoint(run_dir, clock_start=started), EpochTimeEstimate(run_dir)]
    if config.train.patience is not None:
        callbacks.append(EarlyStopping(monitor="val_mae", mode="min", patience=config.train.patience))
    if config.monitor.enabled:
        # gate/<key>_* tags in the run's TensorBoard events; gate_statistics.json + gate_plots.png at fit end.
        # First in the list, so each epoch is closed before a resume checkpoint saves the monitor's state.
        callbacks.insert(0, GateMonitor(run_dir / TENSORBOARD_DIR, config=config.monitor, out_dir=run_dir,
                                        target=config.data.target,
                                        augmented=config.train.text_corruption.probability > 0))
    return callbacks


def _trainer(config: Config, run_dir: Path, callbacks: list[L.Callback]) -> L.Trainer:
    accelerator = config.train.accelerator
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    warn_if_bf16_is_emulated(str(config.train.precision), "cpu" if on_cpu else "accelerator")
    return L.Trainer(
        max_epochs=config.train.epochs,
        accelerator=config.train.accelerator,
        devices=config.train.devices,
        strategy=lightning_strategy(config.train.strategy),
        num_nodes=config.train.num_nodes,
        precision=config.train.precision,
        gradient_clip_val=config.train.gradient_clip or None,
        deterministic=config.train.deterministic,
        callbacks=callbacks,
        logger=TensorBoardLogger(str(run_dir), name=TENSORBOARD_DIR, version=""),
        enable_checkpointing=False,
        enable_progress_bar=config.train.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
    )


def _evaluate_best(run_dir: Path, data: RunData, *, batch_size: int) -> dict[str, dict[str, float]]:
    """The best (validation-selected) weights on val and test; writes ``predictions_<split>.csv``."""
    best_model = rundir.load_run(run_dir).model
    metrics = {}
    for name in ("val", "test"):
        ids = getattr(data.split, name)
        predictions = predict_items(best_model, ids, data.items[name], batch_size=batch_size)
        rundir.write_predictions_csv(rundir.predictions_path(run_dir, name), predictions)
        metrics[name] = regression_metrics(predictions.target, predictions.prediction)
    return metrics


def _summary(config: Config, model: CrysFuseModel, data: RunData, metrics: dict[str, dict[str, float]], *,
             train_seconds: float, epochs: int, best_epoch: int) -> dict[str, Any]:
    """The content of ``summary.json``."""
    text = data.prepared.text
    return {
        "val_mae": metrics["val"]["mae"],
        "test_mae": metrics["test"]["mae"],
        "val_metrics": metrics["val"],
        "test_metrics": metrics["test"],
        "n_params": model.num_parameters(),
        "n_params_fusion": model.num_fusion_parameters(),
        "train_seconds": round(train_seconds, 2),
        "epochs": epochs,
        "best_epoch": best_epoch,
        "fusion": config.fusion.name,
        "target": config.data.target,
        "data": config.data.path,
        "seed": config.train.seed,
        "init_from": config.train.init_from,
        "n_train": len(data.split.train),
        "n_val": len(data.split.val),
        "n_test": len(data.split.test),
        "n_rejected": len(data.rejections),
        "text_missing": text.num_missing,
        "text_truncated": text.num_truncated,
        "encoder_id": text.encoder_id,
        "text_finetune": config.text.finetune if text.encoder_id else None,
        "precision": str(config.train.precision),
        "weights": rundir.WEIGHTS_FILE,
    }
