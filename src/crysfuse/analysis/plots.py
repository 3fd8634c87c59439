"""The figures of the analyses: robustness curves, comparison bars and overlays, diagnosis histograms,
scatter and parity plots, and learning curves. Each function returns a Matplotlib figure; the caller writes it
(:func:`crysfuse.figures.save_figure`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from crysfuse.figures import plt
from crysfuse.predict import Predictions

# ------------------------------------------------------------------------------------------------- generic


def lines_by_group(
    rows: Sequence[dict[str, Any]], *, x: str, y: str, group: Sequence[str], title: str, ylabel: str
) -> Any:
    """One line per distinct value of ``group`` columns, ``y`` against ``x``."""
    figure, axis = plt.subplots(figsize=(6, 4))
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault("/".join(str(row[g]) for g in group), []).append(row)
    for label, members in groups.items():
        members = sorted(members, key=lambda r: r[x])
        axis.plot([r[x] for r in members], [r[y] for r in members], marker="o", label=label)
    axis.set_xlabel(x)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    if groups:
        axis.legend(fontsize=8)
    return figure


def learning_curves(rows: Sequence[dict[str, Any]]) -> Any:
    """Train/val loss and MAE per epoch (``rows``: the lines of ``metrics.jsonl``)."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = [r["epoch"] for r in rows]
    for axis, metric in zip(axes, ("loss", "mae")):
        for split in ("train", "val"):
            values = [r.get(f"{split}_{metric}") for r in rows]
            if any(v is not None for v in values):
                axis.plot(epochs, values, marker="o", label=f"{split} {metric}")
        axis.set_xlabel("epoch")
        axis.set_title(metric.upper())
        axis.grid(alpha=0.3)
        axis.legend()
    return figure


# ---------------------------------------------------------------------------------------------- comparison


def plot_mae_bars(rows: list[dict[str, Any]]) -> Any:
    """Validation and test MAE (mean ± std over seeds) per variant, in rank order."""
    figure, axis = plt.subplots(figsize=(max(5, 0.9 * len(rows) + 2), 4))
    positions = np.arange(len(rows))
    width = 0.38
    for offset, split, colour in ((-width / 2, "val", "tab:blue"), (width / 2, "test", "tab:orange")):
        axis.bar(positions + offset, [r[f"{split}_mae_mean"] for r in rows], width,
                 yerr=np.nan_to_num(np.array([r[f"{split}_mae_std"] for r in rows], dtype=float)),
                 capsize=3, label=f"{split} MAE", color=colour)
    axis.set_xticks(positions, [r["label"] for r in rows], rotation=30, ha="right")
    axis.set_ylabel("MAE (mean ± std over seeds)")
    axis.set_title("Fusion variants, ranked by validation MAE")
    axis.grid(axis="y", alpha=0.3)
    axis.legend()
    return figure


def plot_paired_differences(rows: list[dict[str, Any]], baseline: str) -> Any:
    """Forest plot: each variant's paired test-MAE difference to ``baseline`` (mean over shared seeds) with its
    bootstrap 95 % interval (seeds and test records resampled), against a line at zero. Filled markers: the
    seed-level p-value stays below 0.05 after the Holm correction. ``rows``: :func:`~crysfuse.analysis.
    comparison.summarize` rows; variants without a paired difference are left out."""
    prefix = f"vs_{baseline}_"
    shown = [r for r in rows if r.get(prefix + "delta_test_mae") is not None]
    figure, axis = plt.subplots(figsize=(6.4, 0.45 * len(shown) + 1.6))
    for position, row in enumerate(reversed(shown)):
        delta, interval = row[prefix + "delta_test_mae"], row.get(prefix + "bootstrap_ci")
        if interval:
            axis.plot(interval, [position, position], color="tab:blue", linewidth=2)
        holm = row.get(prefix + "p_seeds_holm")
        significant = holm is not None and holm < 0.05
        axis.plot([delta], [position], "o", color="tab:blue", markerfacecolor="tab:blue" if significant else "white",
                  markersize=7)
    axis.axvline(0.0, color="black", linewidth=0.8)
    axis.set_yticks(range(len(shown)), [f"{r['label']} (n={r['n']})" for r in reversed(shown)])
    axis.locator_params(axis="x", nbins=6)
    axis.set_xlabel(f"test MAE − {baseline} (paired; negative is better)")
    axis.set_title(f"Paired differences to {baseline}, bootstrap 95 % intervals", fontsize=10)
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure


def _panels(count: int, title_height: float = 3.6) -> tuple[Any, list[Any]]:
    figure, axes = plt.subplots(1, max(count, 1), figsize=(5.2 * max(count, 1), title_height), squeeze=False)
    return figure, list(axes[0])


def plot_robustness_overlay(curves: list[dict[str, Any]]) -> Any:
    """Test MAE (mean ± std over seeds) against the corruption ratio, one panel per mode, one line per
    variant (``curves``: rows of :func:`crysfuse.analysis.comparison.robustness_summary`, one strategy expected)."""
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


# ----------------------------------------------------------------------------------------------- diagnosis


def _gate_axes(keys: list[str], title: str) -> tuple[Any, list[Any]]:
    figure, axes = plt.subplots(1, max(len(keys), 1), figsize=(4 * max(len(keys), 1), 3.4), squeeze=False)
    if not keys:
        axes[0, 0].text(0.5, 0.5, "no per-sample gate diagnostics reported", ha="center", va="center")
        axes[0, 0].set_axis_off()
    figure.suptitle(title, fontsize=10)
    return figure, list(axes[0])


def gate_histograms(clean: Predictions, deleted: Predictions) -> Any:
    """Per gate: the distribution with clean text against the one with all text deleted."""
    keys = sorted(clean.gates)
    figure, axes = _gate_axes(keys, "gate distributions: clean vs all text deleted")
    for axis, key in zip(axes, keys):
        pairs = [(v[np.isfinite(v)], label) for v, label in ((clean.gates[key], "clean"),
                                                             (deleted.gates.get(key, np.zeros(0)), "text deleted"))]
        both = np.concatenate([v for v, _ in pairs])
        low, high = (both.min(), both.max()) if both.size else (0.0, 1.0)
        bins = np.linspace(low - 0.01, high + 0.01, 26) if high - low < 0.02 else np.linspace(low, high, 26)
        for values, label in pairs:
            axis.hist(values, bins=bins, alpha=0.55, label=label)
        axis.set_xlabel(key)
        axis.legend(fontsize=7)
    return figure


def gate_vs_error(clean: Predictions, rho: dict[str, float]) -> Any:
    """Per gate: each sample's gate against its absolute error (clean text), titled with Spearman's ρ."""
    keys = sorted(clean.gates)
    abs_error = np.abs(clean.prediction - clean.target)
    figure, axes = _gate_axes(keys, "gate vs absolute error (clean text)")
    for axis, key in zip(axes, keys):
        axis.scatter(clean.gates[key], abs_error, s=10, alpha=0.6)
        axis.set_title(f"Spearman ρ = {rho[key]:.3f}", fontsize=9)
        axis.set_xlabel(key)
        axis.set_ylabel("|error|")
    return figure


def parity(clean: Predictions, deleted: Predictions, mae: dict[str, float]) -> Any:
    """Prediction against target with clean text and with all text deleted (``mae`` by ``clean``/
    ``text_deleted`` for the legend)."""
    return parity_plot([(clean, f"clean (MAE {mae['clean']:.3f})"),
                        (deleted, f"text deleted (MAE {mae['text_deleted']:.3f})")])


def parity_plot(series: Sequence[tuple[Predictions, str]], title: str = "") -> Any:
    """Prediction against target, one scatter per ``(predictions, legend label)``, with the diagonal."""
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    for predictions, label in series:
        axis.scatter(predictions.target, predictions.prediction, s=10, alpha=0.6, label=label)
    finite = np.concatenate([np.concatenate([p.target, p.prediction]) for p, _ in series])
    finite = finite[np.isfinite(finite)]
    if finite.size:
        axis.plot([finite.min(), finite.max()], [finite.min(), finite.max()], color="grey", linewidth=1)
    axis.set_xlabel("target")
    axis.set_ylabel("prediction")
    axis.legend(fontsize=8)
    if title:
        axis.set_title(title, fontsize=10)
    return figure


def error_histogram(predictions: Predictions, title: str = "prediction error") -> Any:
    """The distribution of the signed error (prediction − target), with its mean and the MAE."""
    error = (predictions.prediction - predictions.target)
    error = error[np.isfinite(error)]
    figure, axis = plt.subplots(figsize=(4.5, 3.4))
    axis.hist(error, bins=min(40, max(5, error.size // 4)), color="tab:blue", alpha=0.8)
    axis.axvline(0.0, color="grey", linewidth=1)
    if error.size:
        axis.set_title(f"{title}: MAE {np.abs(error).mean():.3g}, mean {error.mean():+.3g}", fontsize=10)
    axis.set_xlabel("prediction − target")
    axis.set_ylabel("crystals")
    return figure


def mae_by_group(rows: Sequence[dict[str, Any]], *, xlabel: str, title: str) -> Any:
    """Bars of the MAE per group (``rows``: ``group``, ``n``, ``mae``), each labelled with its count."""
    figure, axis = plt.subplots(figsize=(max(4.5, 0.6 * len(rows) + 2), 3.4))
    positions = np.arange(len(rows))
    axis.bar(positions, [r["mae"] for r in rows], color="tab:orange")
    for x, row in zip(positions, rows):
        axis.annotate(f"n={row['n']}", (x, row["mae"]), ha="center", va="bottom", fontsize=7)
    axis.set_xticks(positions, [str(r["group"]) for r in rows], rotation=30, ha="right", fontsize=8)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("MAE")
    axis.set_title(title, fontsize=10)
    axis.grid(axis="y", alpha=0.3)
    return figure


def spread_calibration(curves: dict[str, list[dict[str, float]]]) -> Any:
    """Ensemble calibration: RMSE of the error against the mean spread of the members, in spread bins, one
    line per variant (``curves``: label → rows of :func:`crysfuse.analysis.ensemble.calibration_curve`)."""
    figure, axis = plt.subplots(figsize=(4.8, 4.2))
    highest = 0.0
    for label, rows in curves.items():
        axis.plot([r["spread"] for r in rows], [r["rmse"] for r in rows], marker="o", label=label)
        highest = max([highest] + [max(r["spread"], r["rmse"]) for r in rows])
    axis.plot([0, highest], [0, highest], color="grey", linewidth=1, linestyle="--", label="calibrated")
    axis.set_xlabel("spread over seeds (std of the members)")
    axis.set_ylabel("RMSE of the ensemble mean")
    axis.set_title("Ensemble calibration (test set)", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    return figure


# ------------------------------------------------------------------------------------------------- explain

HEATMAP_WORDS = 30
"""Words shown in an attention heatmap: the most attended ones (by their largest weight), in text order."""


def _shown_columns(weights: np.ndarray, limit: int) -> np.ndarray:
    if weights.shape[1] <= limit:
        return np.arange(weights.shape[1])
    return np.sort(np.argsort(-weights.max(axis=0), kind="stable")[:limit])


def _heatmap(figure: Any, axis: Any, weights: np.ndarray, rows: list[str], columns: list[str], title: str,
             vmin: float | None = 0.0) -> None:
    image = axis.imshow(weights, aspect="auto", cmap="viridis", vmin=vmin)
    axis.set_yticks(range(len(rows)), rows, fontsize=7)
    axis.set_xticks(range(len(columns)), columns, rotation=70, ha="right", fontsize=7)
    axis.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axis, fraction=0.03, pad=0.01)


def attention_heatmap(explanation: Any) -> Any:
    """One crystal's attention (a :class:`crysfuse.analysis.explain.CrystalExplanation`): the token maps
    stacked as rows (atoms, then the graph vector) over the most attended words, then any map over atoms and
    the middle-fusion gate per atom."""
    token_maps = [m for m in explanation.maps if m.key_kind == "tokens" and m.weights.size]
    atom_maps = [m for m in explanation.maps if m.key_kind == "atoms" and m.weights.size]
    gates = {name: np.asarray(v, dtype=float)[None, :] for name, v in explanation.atom_gates.items() if v}
    panels = (1 if token_maps else 0) + len(atom_maps) + len(gates)
    rows_shown = sum(len(m.queries) for m in token_maps)
    heights = ([max(1.5, 0.22 * rows_shown + 1.2)] if token_maps else []) + [1.4] * (panels - bool(token_maps))
    figure, axes = plt.subplots(max(panels, 1), 1, squeeze=False, gridspec_kw={"height_ratios": heights or [1]},
                                figsize=(min(4 + 0.28 * HEATMAP_WORDS, 13), sum(heights or [1.5]) + 0.8))
    axes = list(axes[:, 0])
    header = f"{explanation.id}: target {explanation.target:.3g}, predicted {explanation.prediction:.3g}"
    if not panels:
        axes[0].text(0.5, 0.5, "no attention: the crystal has no text tokens", ha="center", va="center")
        axes[0].set_axis_off()
    if token_maps:
        weights = np.vstack([m.weights for m in token_maps])
        rows = [q if m.query_kind == "atoms" else f"⟨{q}⟩" for m in token_maps for q in m.queries]
        shown = _shown_columns(weights, HEATMAP_WORDS)
        words = explanation.keys_of(token_maps[0])
        note = "" if len(shown) == len(words) else f" ({len(shown)} of {len(words)} words: the most attended)"
        _heatmap(figure, axes.pop(0), weights[:, shown], rows, [words[c] for c in shown],
                 f"attention over the text: {', '.join(m.name for m in token_maps)}{note}")
    for m in atom_maps:
        _heatmap(figure, axes.pop(0), m.weights, [f"⟨{q}⟩" for q in m.queries], explanation.atoms,
                 f"{m.name}: attention over the atoms")
    for name, values in gates.items():
        _heatmap(figure, axes.pop(0), values, [name], explanation.atoms,
                 f"{name}: gate per atom (mean α over channels; a gate, not attention), "
                 f"{values.min():.3f}–{values.max():.3f}", vmin=None)
    figure.suptitle(header, fontsize=10)
    figure.tight_layout()
    return figure
