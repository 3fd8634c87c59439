"""Gate monitoring: TensorBoard curves, anomaly rules and a report of every fusion gate during training.

:class:`GateMonitor` reads only the documented diagnostics contract (:mod:`crysfuse.fusion.base`): every 1-D
tensor is a per-sample gate ``k``; ``k_mean``/``k_std``/``k_min``/``k_max`` are its summaries (recomputed here
from the samples, so they are skipped); any other 0-dim value (``warmup_factor``, ``quality_threshold``, ...)
is a scalar that is logged as is. The rules (:mod:`crysfuse.training.gate_rules`) depend only on the last
``_``-separated part of a gate's key, never on the fusion variant.

A Lightning callback (``crysfuse train`` attaches one) or standalone: ``GateMonitor(log_dir)`` then
``update(diagnostics, step)`` every step, ``end_epoch()`` per epoch and ``finish()`` (writes the report).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from crysfuse.config import MonitorConfig
from crysfuse.io import write_json_atomic
from crysfuse.rundir.layout import GATE_PLOTS_FILE, GATE_STATISTICS_FILE
from crysfuse.training.gate_distribution import describe, quantiles, target_classes
from crysfuse.training.gate_rules import (
    INFORMATIONAL_RULES,
    MIN_CLEAN_SAMPLES,
    check_gate,
    gate_kind,
    split_diagnostics,
    summarize,
)

logger = logging.getLogger(__name__)


@dataclass
class GateWarning:
    """A rule that fired (first step in its epoch); ``repeats``: later firings on that gate in that epoch."""

    epoch: int
    step: int
    rule: str
    gate: str
    value: float
    threshold: float
    message: str
    repeats: int = 0


class _Stats:
    """Running count/sum/sum of squares/min/max of finite values (no sample is kept)."""

    def __init__(self) -> None:
        self.count, self.total, self.total_sq, self.min, self.max = 0, 0.0, 0.0, math.inf, -math.inf

    def add(self, values: np.ndarray) -> None:
        finite = values[np.isfinite(values)]
        if finite.size:
            self.count, self.total = self.count + int(finite.size), self.total + float(finite.sum())
            self.total_sq += float(np.square(finite).sum())
            self.min, self.max = min(self.min, float(finite.min())), max(self.max, float(finite.max()))

    def to_dict(self) -> dict[str, float]:
        if not self.count:
            return summarize(np.zeros(0))
        mean = self.total / self.count
        std = math.sqrt(max(self.total_sq / self.count - mean * mean, 0.0))
        return {"mean": mean, "std": std, "min": self.min, "max": self.max, "count": self.count}


class GateMonitor(L.Callback):
    """Watches every fusion gate during training (see the module docstring and ``docs/monitor.md``).

    Args:
        log_dir: TensorBoard directory for a writer of its own; as a callback the trainer's TensorBoard
            logger is used when there is one.
        config: Intervals and rule thresholds (default :class:`MonitorConfig`).
        out_dir: Where ``gate_statistics.json`` and ``gate_plots.png`` go (default ``log_dir``).
        writer: An existing ``SummaryWriter``-like object (``add_scalar``/``add_histogram``).
        target: The target's name (``data.target``), for the class rule (``monitor.classes``).
        augmented: Text-corruption augmentation is on: the jump rule compares the means over the samples with
            clean text (``update(..., corrupted=)``), or uses ``monitor.jump_augmented`` where that is unknown.
    """

    def __init__(self, log_dir: str | Path | None = None, *, config: MonitorConfig | None = None,
                 out_dir: str | Path | None = None, writer: Any = None, target: str = "",
                 augmented: bool = False) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.out_dir = Path(out_dir) if out_dir is not None else self.log_dir
        self.config = config or MonitorConfig()
        self.target, self.augmented = target, augmented
        self.last_epoch_distribution: dict[str, dict[str, Any]] = {}
        self._writer, self._own_writer = writer, False
        self.active, self._batch_step = True, 0
        self.epoch, self.step, self.updates = 0, -1, 0
        self.training: dict[str, _Stats] = {}
        self.last_epoch: dict[str, dict[str, float]] = {}
        self.history: dict[str, dict[str, list[float]]] = {}
        self.scalar_history: dict[str, dict[str, list[float]]] = {}
        self.warnings: list[GateWarning] = []
        # Samples not yet summarised, by gate: this epoch's, since the last log point, since the last check;
        # targets (NaN where unknown) and corruption flags of this epoch's and the check window's samples.
        self._epoch_values, self._log_window, self._check_window = {}, {}, {}  # type: ignore[var-annotated]
        self._epoch_targets, self._check_targets, self._check_corrupted = {}, {}, {}  # type: ignore[var-annotated]
        self._epoch_corrupted: dict[str, list[np.ndarray]] = {}
        self._steps_since_log = self._steps_since_check = 0
        self._previous_mean: dict[str, float] = {}
        self._open: dict[tuple[str, str], GateWarning] = {}

    @property
    def writer(self) -> Any:
        """The TensorBoard writer (created in ``log_dir`` on first use when none was given)."""
        if self._writer is None and self.log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer, self._own_writer = SummaryWriter(str(self.log_dir)), True
        return self._writer

    def update(self, diagnostics: Mapping[str, Any], step: int, *, targets: Any = None,
               corrupted: Any = None) -> None:
        """Record one training step's diagnostics; logs and checks at the configured intervals.

        Args:
            targets: The batch's targets ``[B]`` (for gate means per class), optional.
            corrupted: ``[B]`` bool, True where the sample's text was corrupted by augmentation, optional.
        """
        gates, scalars = split_diagnostics(diagnostics)
        self.step, self.updates = int(step), self.updates + 1
        for key, values in gates.items():
            self.training.setdefault(key, _Stats()).add(values)
            for store in (self._epoch_values, self._log_window, self._check_window):  # pending samples
                store.setdefault(key, []).append(values)
            self._epoch_targets.setdefault(key, []).append(_per_sample(targets, values.size, np.nan))
            self._check_targets.setdefault(key, []).append(_per_sample(targets, values.size, np.nan))
            self._check_corrupted.setdefault(key, []).append(_per_sample(corrupted, values.size, np.nan))
            self._epoch_corrupted.setdefault(key, []).append(_per_sample(corrupted, values.size, np.nan))
        for name, value in scalars.items():
            history = self.scalar_history.setdefault(name, {"step": [], "value": []})
            history["step"].append(self.step)
            history["value"].append(value)
            if self.writer is not None:
                self.writer.add_scalar(f"gate/{name}", value, self.step)
        self._steps_since_log += 1
        self._steps_since_check += 1
        if self._steps_since_log >= max(self.config.log_interval, 1):
            self._log_point()
        if self._steps_since_check >= max(self.config.check_interval, 1):
            self.check()

    def _log_point(self) -> None:
        """One trajectory point per gate (statistics of the samples since the previous point)."""
        for key, arrays in self._log_window.items():
            values = np.concatenate(arrays)
            stats = summarize(values)
            history = self.history.setdefault(key, {"step": [], "mean": [], "std": [], "min": [], "max": []})
            history["step"].append(self.step)
            for name in ("mean", "std", "min", "max"):
                history[name].append(stats[name])
                if self.writer is not None:
                    self.writer.add_scalar(f"gate/{key}_{name}", stats[name], self.step)
            for name, value in quantiles(values).items():  # the plot's bands (absent in states before issue 19)
                history.setdefault(name, []).append(value)
        self._log_window, self._steps_since_log = {}, 0

    def check(self) -> list[GateWarning]:
        """Run the anomaly rules on the samples since the previous check; returns the new warnings."""
        new: list[GateWarning] = []
        for key, arrays in sorted(self._check_window.items()):
            values = np.concatenate(arrays)
            targets = np.concatenate(self._check_targets.get(key, [np.full(values.size, np.nan)]))
            clean, jump_threshold = self._clean_mask(key, values)
            classes = target_classes(targets if np.isfinite(targets).any() else None, self.target, self.config)
            for rule, value, threshold, message in check_gate(key, values, self.config, self._previous_mean.get(key),
                                                               classes=classes, clean=clean,
                                                               jump_threshold=jump_threshold):
                known = self._open.get((rule, key))
                if known is not None:
                    known.repeats += 1
                    continue
                warning = GateWarning(self.epoch, self.step, rule, key, value, threshold, message)
                self._open[(rule, key)] = warning
                self.warnings.append(warning)
                new.append(warning)
                logger.log(logging.INFO if rule in INFORMATIONAL_RULES else logging.WARNING,
                           "gate monitor, epoch %d step %d, %s: %s", self.epoch, self.step, rule, message)
            judged = values if clean is None else values[clean]
            finite = judged[np.isfinite(judged)]
            if finite.size >= (1 if clean is None else MIN_CLEAN_SAMPLES):  # the next jump's reference
                self._previous_mean[key] = float(finite.mean())
        self._check_window, self._steps_since_check = {}, 0
        self._check_targets, self._check_corrupted = {}, {}
        return new

    def _clean_mask(self, key: str, values: np.ndarray) -> tuple[np.ndarray | None, float | None]:
        """Under augmentation: which samples of the window have clean text (the level rules and the jump rule
        judge those), or, where the batches did not say, no mask and ``monitor.jump_augmented`` as the jump
        threshold. Without augmentation: ``(None, None)``, the plain rules."""
        if not self.augmented:
            return None, None
        corrupted = np.concatenate(self._check_corrupted.get(key, [np.full(values.size, np.nan)]))
        if corrupted.size != values.size or np.isnan(corrupted).all():
            return None, self.config.jump_augmented
        return corrupted == 0, None

    def end_epoch(self, epoch: int | None = None) -> None:
        """Close an epoch: pending points and checks, histograms, last-epoch statistics."""
        if self._log_window:
            self._log_point()
        if self._check_window:
            self.check()
        epoch_values = {key: np.concatenate(arrays) for key, arrays in self._epoch_values.items()}
        for key, values in epoch_values.items():
            if self.writer is not None and np.isfinite(values).any():
                self.writer.add_histogram(f"gate/{key}", values[np.isfinite(values)], max(self.step, 0))
        if epoch_values:
            self.last_epoch = {key: summarize(values) for key, values in epoch_values.items()}
            self.last_epoch_distribution = {key: self._distribution(key, values)
                                            for key, values in epoch_values.items()}
            logger.debug("gate monitor epoch %d: %s", self.epoch, ", ".join(
                f"{k} {v['mean']:.3f}±{v['std']:.3f}" for k, v in sorted(self.last_epoch.items())))
        self._epoch_values, self._epoch_targets, self._epoch_corrupted, self._open = {}, {}, {}, {}
        self.epoch = (epoch if epoch is not None else self.epoch) + 1

    def _distribution(self, key: str, values: np.ndarray) -> dict[str, Any]:
        """Quantiles, bimodality, two-group split, class means and switch verdict of one epoch's samples
        (under augmentation, of its clean-text samples where the batches said which they are)."""
        targets = np.concatenate(self._epoch_targets.get(key, [np.full(values.size, np.nan)]))
        corrupted = np.concatenate(self._epoch_corrupted.get(key, [np.full(values.size, np.nan)]))
        masked = self.augmented and corrupted.size == values.size and not np.isnan(corrupted).all()
        if masked:
            values, targets = values[corrupted == 0], targets[corrupted == 0]
        if targets.size != values.size or not np.isfinite(targets).any():
            targets = None
        report = describe(values, target_classes(targets, self.target, self.config))
        report["samples"] = "clean text" if masked else "all"
        return report

    def statistics(self) -> dict[str, Any]:
        """The content of ``gate_statistics.json``."""
        by_rule: dict[str, int] = {}
        for warning in self.warnings:  # informational findings (a switch) are counted too, under their rule
            by_rule[warning.rule] = by_rule.get(warning.rule, 0) + 1 + warning.repeats
        return {
            "total_steps": self.updates, "last_step": self.step, "epochs": self.epoch,
            "thresholds": dataclasses.asdict(self.config), "target": self.target, "augmented": self.augmented,
            "gates": {key: {"kind": gate_kind(key), "training": stats.to_dict(),
                            "last_epoch": self.last_epoch.get(key, summarize(np.zeros(0))),
                            "last_epoch_distribution": self.last_epoch_distribution.get(key)}
                      for key, stats in sorted(self.training.items())},
            "scalars": {name: {"last": h["value"][-1], "min": min(h["value"]), "max": max(h["value"])}
                        for name, h in sorted(self.scalar_history.items())},
            "warnings_count": len(self.warnings), "warnings_by_rule": by_rule,
            "warnings": [dataclasses.asdict(w) for w in self.warnings]}

    def summary_lines(self) -> list[str]:
        """A short human-readable summary (logged by :meth:`finish`)."""
        if not self.training:
            return ["gate monitor: no per-sample gate diagnostics were reported"]
        lines = [f"gate monitor: {self.updates} steps, {self.epoch} epochs"]
        for key, stats in sorted(self.training.items()):
            s, last = stats.to_dict(), self.last_epoch.get(key, {})
            lines.append(f"  {key}: mean {s['mean']:.3f} std {s['std']:.3f} [{s['min']:.3f}, {s['max']:.3f}]"
                         f"; last epoch mean {last.get('mean', math.nan):.3f}")
        lines.append(f"  warnings: {len(self.warnings)}" + "".join(
            f"\n    epoch {w.epoch} step {w.step} {w.rule}: {w.message}" for w in self.warnings[-5:]))
        return lines

    def finish(self) -> dict[str, Any]:
        """Write ``gate_statistics.json`` and ``gate_plots.png`` to ``out_dir``, log the summary, flush."""
        if self._log_window or self._check_window or self._epoch_values:
            self.end_epoch()
        statistics = self.statistics()
        for line in self.summary_lines():
            logger.info("%s", line)
        if self.out_dir is not None:
            write_json_atomic(self.out_dir / GATE_STATISTICS_FILE, statistics)
            # Deferred: importing crysfuse.figures loads Matplotlib and selects its Agg backend, which only
            # the end of a fit needs (a notebook that imports crysfuse.training keeps its own backend until then).
            from crysfuse.figures import save_figure
            from crysfuse.training.gate_plots import plot_trajectories

            save_figure(plot_trajectories(self), self.out_dir / GATE_PLOTS_FILE)
        if self._writer is not None:
            self._writer.flush()
            if self._own_writer:
                self._writer.close()
                self._writer, self._own_writer = None, False
        return statistics

    def state_dict(self) -> dict[str, Any]:
        """Plain containers only (resume checkpoints load with ``weights_only=True``), taken between epochs."""
        return {"epoch": self.epoch, "step": self.step, "updates": self.updates,
                "training": {k: vars(v).copy() for k, v in self.training.items()},
                "last_epoch": self.last_epoch, "history": self.history, "scalar_history": self.scalar_history,
                "warnings": [dataclasses.asdict(w) for w in self.warnings], "previous_mean": self._previous_mean,
                "last_epoch_distribution": self.last_epoch_distribution}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epoch, self.step, self.updates = state_dict["epoch"], state_dict["step"], state_dict["updates"]
        self.training = {k: _Stats() for k in state_dict["training"]}
        for key, stats in self.training.items():
            vars(stats).update(state_dict["training"][key])
        self.last_epoch, self.history = state_dict["last_epoch"], state_dict["history"]
        self.scalar_history, self._previous_mean = state_dict["scalar_history"], state_dict["previous_mean"]
        self.warnings = [GateWarning(**w) for w in state_dict["warnings"]]
        self.last_epoch_distribution = state_dict.get("last_epoch_distribution", {})  # absent before issue 16

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.active = trainer.is_global_zero
        if self.active and self._writer is None:
            experiment = getattr(trainer.logger, "experiment", None)
            if hasattr(experiment, "add_histogram") and hasattr(experiment, "add_scalar"):
                self._writer = experiment

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._batch_step = int(trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.active and isinstance(outputs, Mapping) and isinstance(outputs.get("diagnostics"), Mapping):
            self.update(outputs["diagnostics"], self._batch_step, targets=outputs.get("targets"),
                        corrupted=outputs.get("text_corrupted"))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.active and not trainer.sanity_checking:
            self.end_epoch(trainer.current_epoch)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.active:
            self.finish()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not self.active:
            return
        try:  # an interrupted run still gets its report; never hide the training error behind a reporting one
            self.finish()
        except Exception:
            logger.exception("gate monitor could not write its report")


def _per_sample(values: Any, size: int, fill: float) -> np.ndarray:
    """``values`` as a float array ``[size]`` (``fill`` where absent or of another length)."""
    if values is None:
        return np.full(size, fill)
    array = np.asarray(values.detach().cpu().double() if hasattr(values, "detach") else values, dtype=float)
    return array.reshape(-1) if array.size == size else np.full(size, fill)
