"""``gate_plots.png``: the gate monitor's trajectories, one panel per gate (see docs/monitor.md). Imported by
:meth:`~crysfuse.training.monitor.GateMonitor.finish` only, so Matplotlib loads at the end of a fit, not with
:mod:`crysfuse.training`."""

from __future__ import annotations

from typing import Any

import numpy as np

from crysfuse.figures import plt
from crysfuse.training.gate_rules import gate_kind, threshold_lines


def plot_trajectories(monitor: Any) -> Any:
    """One panel per gate of ``monitor`` (a :class:`~crysfuse.training.monitor.GateMonitor`, read only): the
    mean; bands between the 5 and 95 % and the 25 and 75 % quantiles of the samples of each log point, inside
    the min–max range and so inside a gate's [0, 1]; threshold lines and warnings; plus the scalars."""
    keys = sorted(monitor.history)
    panels = len(keys) + (1 if monitor.scalar_history else 0)
    figure, axes = plt.subplots(max(panels, 1), 1, figsize=(7, 2.6 * max(panels, 1)), squeeze=False)
    axes = axes[:, 0]
    if not panels:
        axes[0].text(0.5, 0.5, "no per-sample gate diagnostics reported", ha="center", va="center")
        axes[0].set_axis_off()
        return figure
    for axis, key in zip(axes, keys):
        h = {name: np.asarray(v, dtype=float) for name, v in monitor.history[key].items()}
        axis.fill_between(h["step"], h["min"], h["max"], color="tab:blue", alpha=0.10, label="min–max")
        if all(len(h.get(q, ())) == len(h["step"]) for q in ("q05", "q25", "q75", "q95")):
            axis.fill_between(h["step"], h["q05"], h["q95"], color="tab:blue", alpha=0.18, label="5–95 %")
            axis.fill_between(h["step"], h["q25"], h["q75"], color="tab:blue", alpha=0.30, label="25–75 %")
        else:  # a state saved before quantiles were kept: ±std, cut to the range the samples span
            axis.fill_between(h["step"], np.maximum(h["mean"] - h["std"], h["min"]),
                              np.minimum(h["mean"] + h["std"], h["max"]), color="tab:blue", alpha=0.25,
                              label="±std")
        axis.plot(h["step"], h["mean"], color="tab:blue", marker="." if len(h["step"]) < 50 else None,
                  label="mean")
        for value, label in threshold_lines(key, monitor.config):
            band = label in ("saturation", "")
            axis.axhline(value, color="grey" if band else "tab:red", linestyle=":" if band else "--",
                         linewidth=1, label=label or None)
        steps = sorted({w.step for w in monitor.warnings if w.gate == key})
        for i, step in enumerate(steps):
            axis.axvline(step, color="tab:orange", alpha=0.5, linewidth=1, label="warning" if i == 0 else None)
        axis.set_title(key if gate_kind(key) == key else f"{key} (rules: {gate_kind(key)})", fontsize=9)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6, loc="best", ncol=3)
    if monitor.scalar_history:
        axis = axes[len(keys)]
        for name, h in sorted(monitor.scalar_history.items()):
            axis.plot(h["step"], h["value"], label=name)
        axis.set_title("scalar diagnostics", fontsize=9)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6)
    axes[panels - 1].set_xlabel("training step")
    figure.tight_layout()
    return figure
