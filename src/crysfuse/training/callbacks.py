"""Lightning callbacks that write the run directory: per-epoch metrics, the best (validation) weights, and an
early estimate of the time per epoch."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L

from crysfuse.allocator import release_free_memory
from crysfuse.io import append_jsonl
from crysfuse.rundir import save_weights, update_status, weights_path

logger = logging.getLogger(__name__)

METRIC_KEYS = ("train_loss", "train_mae", "val_loss", "val_mae")


class MetricsJsonl(L.Callback):
    """Appends one line per epoch to ``metrics.jsonl``: epoch, losses, MAEs, learning rate, seconds."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._started = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics  # every rank: reading it syncs the epoch metrics across processes
        if not trainer.is_global_zero:
            return
        record: dict[str, float | int] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for key in METRIC_KEYS:
            if key in metrics:
                record[key] = float(metrics[key])
        groups = trainer.optimizers[0].param_groups
        record["lr"] = float(groups[0]["lr"])
        if pl_module.model.text_encoder_parameters():  # a fine-tuned text encoder's own group, always last
            record["lr_text"] = float(groups[-1]["lr"])
        record["seconds"] = round(time.perf_counter() - self._started, 3)
        append_jsonl(self.path, record)


class ReleaseMemory(L.Callback):
    """Returns freed heap memory to the system every ``every_steps`` training steps and after every training
    and validation epoch (:func:`crysfuse.allocator.release_free_memory`): without it, batches of
    ever-different sizes fragment the C library's heaps and resident memory creeps up by gigabytes."""

    def __init__(self, every_steps: int = 100) -> None:
        self.every_steps = every_steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if (batch_idx + 1) % self.every_steps == 0:
            release_free_memory()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        release_free_memory()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        release_free_memory()


class BestWeights(L.Callback):
    """Model selection on validation MAE only: saves ``model.safetensors`` whenever ``val_mae`` improves
    (``select="best_val"``), or after every validation (``select="last"``: the run keeps its last epoch's
    weights, as the reference ALIGNN tests). The weights saved are the module's ``eval_model`` (the weight
    average with ``train.ema_decay``), else its ``model``."""

    def __init__(self, run_dir: Path, *, select: str = "best_val") -> None:
        self.run_dir = Path(run_dir)
        self.select = select
        self.best_mae = math.inf
        self.best_epoch = -1

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val_mae" not in trainer.callback_metrics:
            return
        mae = float(trainer.callback_metrics["val_mae"])
        # The first epoch is always kept (even with a non-finite MAE) so a finished run always has weights;
        # afterwards only a finite improvement replaces them.
        first = self.best_epoch < 0
        better = math.isfinite(mae) and not mae >= self.best_mae
        if first or better or self.select == "last":
            self.best_mae, self.best_epoch = mae, trainer.current_epoch
            if trainer.is_global_zero:
                save_weights(weights_path(self.run_dir), getattr(pl_module, "eval_model", pl_module.model))

    def state_dict(self) -> dict[str, float]:
        return {"best_mae": self.best_mae, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.best_mae = float(state_dict["best_mae"])
        self.best_epoch = int(state_dict["best_epoch"])


def format_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min`` or ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class EpochTimeEstimate(L.Callback):
    """After the first ``steps`` training steps of the first epoch this fit runs, logs the estimated seconds
    per epoch (training steps only; validation adds to it) and for the epochs left up to ``max_epochs`` (an
    upper bound when early stopping ends the run sooner), and records both as ``estimate`` in
    ``status.json`` (and the summary). A resumed fit estimates again. The first step (warm-up: caches, allocator) is not counted; an epoch shorter than
    ``steps`` is estimated at its end from the steps it had."""

    def __init__(self, run_dir: Path, steps: int = 20) -> None:
        self.run_dir = Path(run_dir)
        self.steps = steps
        self.estimate: dict[str, float | int] | None = None
        self._times: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.estimate is None:
            self._times = [time.perf_counter()]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.estimate is not None or not self._times:
            return
        self._times.append(time.perf_counter())
        if len(self._times) == self.steps + 2:  # epoch start, the warm-up step, then `steps` timed steps
            self._record(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.estimate is None and len(self._times) >= 2:
            self._record(trainer)

    def _record(self, trainer: L.Trainer) -> None:
        times = self._times[1:] if len(self._times) >= 3 else self._times  # skip the warm-up step if we can
        per_step = (times[-1] - times[0]) / (len(times) - 1)
        batches = trainer.num_training_batches
        steps_per_epoch = int(batches) if math.isfinite(batches) else len(self._times) - 1
        epochs_left = max(trainer.max_epochs - trainer.current_epoch, 1)
        self.estimate = {"seconds_per_step": round(per_step, 4), "steps_per_epoch": steps_per_epoch,
                         "timed_steps": len(times) - 1, "epoch_seconds": round(per_step * steps_per_epoch, 1),
                         "remaining_seconds": round(per_step * steps_per_epoch * epochs_left, 1),
                         "max_epochs": trainer.max_epochs}
        if not trainer.is_global_zero:
            return
        logger.info("time estimate from %d steps: about %s per epoch (%d steps, training only); at most %s for "
                    "the %d epochs left of %d", self.estimate["timed_steps"],
                    format_duration(self.estimate["epoch_seconds"]), steps_per_epoch,
                    format_duration(self.estimate["remaining_seconds"]), epochs_left, trainer.max_epochs)
        update_status(self.run_dir, estimate=self.estimate)
