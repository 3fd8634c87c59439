"""Figures of a comparison: MAE per variant with error bars, robustness curves overlaid."""

from __future__ import annotations

from typing import Any

import numpy as np

from crysfuse.plots import plt


def plot_mae_bars(rows: list[dict[str, Any]]) -> Any:
    """Validation and test MAE (mean ± std over seeds) per variant, in rank order."""
    figure, axis = plt.subplots(figsize=(max(5, 0.9 * len(rows) + 2), 4))
    positions = np.arange(len(rows))
    width = 0.38
    for offset, split, colour in ((-width / 2, "val", "tab:blue"), (width / 2, "test", "tab:orange")):
        axis.bar(positions + offset, [r[f"{split}_mae_mean"] for r in rows], width,
                 yerr=[0 if np.isnan(r[f"{split}_mae_std"]) else r[f"{split}_mae_std"] for r in rows],
                 capsize=3, label=f"{split} MAE", color=colour)
    axis.set_xticks(positions, [r["label"] for r in rows], rotation=30, ha="right")
    axis.set_ylabel("MAE (mean ± std over seeds)")
    axis.set_title("Fusion variants, ranked by validation MAE")
    axis.grid(axis="y", alpha=0.3)
    axis.legend()
    return figure


def _panels(count: int, title_height: float = 3.6) -> tuple[Any, list[Any]]:
    figure, axes = plt.subplots(1, max(count, 1), figsize=(5.2 * max(count, 1), title_height), squeeze=False)
    return figure, list(axes[0])


def plot_robustness_overlay(curves: list[dict[str, Any]]) -> Any:
    """Test MAE (mean ± std over seeds) against the corruption ratio, one panel per mode, one line per
    variant (``curves``: rows of :func:`crysfuse.comparison.robustness_summary`, one strategy expected)."""
    modes = sorted({row["mode"] for row in curves})
    figure, axes = _panels(len(modes))
    for axis, mode in zip(axes, modes):
        for label in sorted({row["label"] for row in curves}):
            points = sorted((row["ratio"], row["mae_mean"], row["mae_std"]) for row in curves
                            if row["label"] == label and row["mode"] == mode)
            ratios, means, stds = (np.array(v, dtype=float) for v in zip(*points))
            axis.errorbar(ratios, means, yerr=np.nan_to_num(stds), marker="o", capsize=3, label=label)
        axis.set_xlabel(f"fraction of words {'deleted' if mode == 'delete' else 'masked'}")
        axis.set_ylabel("test MAE (mean ± std over seeds)")
        axis.set_title(f"Robustness: text {mode}")
        axis.grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    figure.tight_layout()
    return figure


def plot_robustness_gates(curves: list[dict[str, Any]]) -> Any:
    """Mean gate values against the corruption ratio: one panel per gate key, one line per variant and mode
    (solid: delete, dashed: mask)."""
    keys = sorted({k[len("gate_"):] for row in curves for k in row
                   if k.startswith("gate_") and not k.endswith("_std")})
    figure, axes = _panels(len(keys))
    styles = {"delete": "-", "mask": "--"}
    for axis, key in zip(axes, keys):
        for label in sorted({row["label"] for row in curves if f"gate_{key}" in row}):
            for mode in sorted({row["mode"] for row in curves}):
                points = sorted((row["ratio"], row[f"gate_{key}"], row[f"gate_{key}_std"]) for row in curves
                                if row["label"] == label and row["mode"] == mode and f"gate_{key}" in row)
                if not points:
                    continue
                ratios, means, stds = (np.array(v, dtype=float) for v in zip(*points))
                axis.errorbar(ratios, means, yerr=np.nan_to_num(stds), marker="o", capsize=2,
                              linestyle=styles.get(mode, ":"), label=f"{label} ({mode})")
        axis.set_xlabel("corruption ratio")
        axis.set_ylabel(f"mean {key}")
        axis.set_title(f"Gate '{key}' under corrupted text")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6)
    figure.tight_layout()
    return figure
