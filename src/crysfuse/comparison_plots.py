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


def plot_robustness_overlay(runs: list[Any]) -> Any:
    """Test MAE against deletion ratio (mode ``delete``), one line per variant (mean over seeds and
    strategies)."""
    figure, axis = plt.subplots(figsize=(6, 4))
    curves: dict[str, dict[float, list[float]]] = {}
    for run in runs:
        for row in run.robustness:
            if row["mode"] == "delete":
                curves.setdefault(run.label, {}).setdefault(float(row["ratio"]), []).append(float(row["mae"]))
    for label, points in sorted(curves.items()):
        ratios = sorted(points)
        axis.plot(ratios, [np.mean(points[r]) for r in ratios], marker="o", label=label)
    axis.set_xlabel("fraction of text deleted")
    axis.set_ylabel("test MAE")
    axis.set_title("Robustness to missing text")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return figure
