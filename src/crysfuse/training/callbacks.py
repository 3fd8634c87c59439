"""Lightning callbacks that write the run directory: per-epoch metrics and the best (validation) weights."""

from __future__ import annotations

import math
import time
from pathlib import Path

import lightning as L

from crysfuse.allocator import release_free_memory
from crysfuse.io import append_jsonl
from crysfuse.rundir import save_weights, weights_path

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
        record["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        record["seconds"] = round(time.perf_counter() - self._started, 3)
        append_jsonl(self.path, record)


class ReleaseMemory(L.Callback):
    """Returns freed heap memory to the system every ``every_steps`` training steps and after every training
    and validation epoch (:func:`crysfuse.allocator.release_free_memory`): without it, batches of
    ever-different sizes fragment the C library's heaps and resident memory creeps up by gigabytes."""

    def __init__(self, every_steps: int = 100) -> None:
        self.every_steps = every_steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,  # noqa: ANN001
                           batch_idx: int) -> None:
        if (batch_idx + 1) % self.every_steps == 0:
            release_free_memory()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        release_free_memory()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        release_free_memory()


class BestWeights(L.Callback):
    """Model selection on validation MAE only: saves ``model.safetensors`` whenever ``val_mae`` improves."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
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
        if first or better:
            self.best_mae, self.best_epoch = mae, trainer.current_epoch
            if trainer.is_global_zero:
                save_weights(weights_path(self.run_dir), pl_module.model)

    def state_dict(self) -> dict[str, float]:
        return {"best_mae": self.best_mae, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.best_mae = float(state_dict["best_mae"])
        self.best_epoch = int(state_dict["best_epoch"])
