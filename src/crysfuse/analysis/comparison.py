"""A comparison of finished run directories: mean ± std over seeds, paired tests against a baseline, ranked by
validation MAE (the test split is reported, never used to choose), written as tables and figures into a
comparison directory. The runs themselves come from anywhere; :mod:`crysfuse.analysis.matrix` trains them."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import ttest_rel

from crysfuse import rundir
from crysfuse.analysis.ensemble import ensemble_uncertainty
from crysfuse.analysis.markup import escape_markdown
from crysfuse.analysis.plots import (
    plot_mae_bars,
    plot_paired_differences,
    plot_robustness_gates,
    plot_robustness_overlay,
    spread_calibration,
)
from crysfuse.config import ConfigError
from crysfuse.figures import save_figure
from crysfuse.io import write_csv_atomic, write_json_atomic, write_text_atomic
from crysfuse.predict import Predictions
from crysfuse.training.gate_distribution import target_classes

logger = logging.getLogger(__name__)

BOOTSTRAP_SAMPLES = 2000

# The files of a comparison directory (``crysfuse compare --out``).
COMPARISON_JSON = "comparison.json"
COMPARISON_CSV = "comparison.csv"
COMPARISON_MD = "comparison.md"
COMPARISON_MAE_PNG = "comparison_mae.png"
COMPARISON_FOREST_PNG = "comparison_forest.png"
COMPARISON_ROBUSTNESS_CSV = "comparison_robustness.csv"
COMPARISON_ROBUSTNESS_PNG = "comparison_robustness.png"
COMPARISON_GATES_PNG = "comparison_gates.png"
COMPARISON_CALIBRATION_PNG = "comparison_calibration.png"


@dataclass
class RunInfo:
    """What a comparison needs from one finished run directory."""

    run_dir: Path
    label: str
    seed: int
    summary: dict[str, Any]
    test_errors: dict[str, float] = field(default_factory=dict)
    """Absolute test error per record id."""
    deleted_mae: float | None = None
    """MAE with all text deleted (from ``robustness/robustness.json``, when present)."""
    robustness_clean_mae: float | None = None
    """MAE with clean text on the same records as :attr:`deleted_mae` (robustness may use part of a split)."""
    robustness: list[dict[str, Any]] = field(default_factory=list)
    class_mae: dict[str, float] = field(default_factory=dict)
    """Test MAE per target class (metals and non-metals for band gaps, by the run's ``monitor`` class rule)."""
    test_predictions: Predictions | None = None
    """The run's test predictions (read once; the ensemble columns use them)."""


def run_label(config: dict[str, Any]) -> str:
    """``experiment.name`` when set, else the fusion key (``+middle`` when middle fusion is on)."""
    name = config.get("experiment", {}).get("name")
    if name:
        return str(name)
    fusion = config["fusion"]
    return fusion["name"] + ("+middle" if fusion.get("middle_layers") else "")


def read_run(run_dir: str | Path) -> RunInfo:
    """Load the summary, per-sample test errors (and per-class MAE) and robustness results of a finished run."""
    run_dir = Path(run_dir)
    summary = rundir.read_summary(run_dir)
    predictions = rundir.read_test_predictions(run_dir)
    info = RunInfo(run_dir=run_dir, label=run_label(rundir.read_config_dict(run_dir)), seed=int(summary["seed"]),
                   summary=summary, test_errors=rundir.errors_by_id(predictions),
                   class_mae=_class_mae(run_dir, predictions), test_predictions=predictions)
    robustness = rundir.read_robustness_rows(run_dir)
    if robustness is not None:
        info.robustness = robustness
        deleted = [r["mae"] for r in info.robustness if r["mode"] == "delete" and float(r["ratio"]) == 1.0]
        info.deleted_mae = float(np.mean(deleted)) if deleted else None
        clean = [r["mae"] for r in info.robustness if float(r["ratio"]) == 0.0]
        info.robustness_clean_mae = float(np.mean(clean)) if clean else None
    return info


def _class_mae(run_dir: Path, predictions: Predictions) -> dict[str, float]:
    """Test MAE per class of the run's class rule (``monitor.classes``; none for targets without classes, or
    when the run's config cannot be read by this version)."""
    try:
        config = rundir.saved_config(run_dir)
    except ConfigError as err:
        logger.warning("%s: no MAE per class (its config.json does not load: %s)", run_dir, err)
        return {}
    classes = target_classes(predictions.target, config.data.target, config.monitor) if config else None
    if classes is None:
        return {}
    errors = np.abs(predictions.prediction - predictions.target)
    return {name: float(np.nanmean(errors[classes.labels == k]))
            for k, name in enumerate(classes.names) if (classes.labels == k).any()}


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample std of the finite values; the std is ``None`` (no spread) for a single value."""
    array = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if array.size == 0:
        return math.nan, math.nan
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else None


def paired_test(runs: list[RunInfo], baseline: list[RunInfo], *, seed: int = 0) -> dict[str, Any]:
    """Compare test MAE with the baseline, paired by seed and by test record.

    Returns the mean difference over shared seeds with a paired t-test p-value (≥ 2 seeds), and a two-way
    bootstrap of the mean per-record error difference (:func:`bootstrap_seeds_and_records`, over the test
    records whose errors are finite in every pair): an approximate 95 % percentile interval and a two-sided
    bootstrap p-value (the share of draws on the other side of zero, doubled, never below ``2 / (B + 1)``).
    The seed-level t-test (and its Holm adjustment) is the decision; the bootstrap shows the size and spread.
    Negative differences mean better than the baseline.
    """
    by_seed = {r.seed: r for r in baseline}
    pairs = [(r, by_seed[r.seed]) for r in runs if r.seed in by_seed]
    result: dict[str, Any] = {"n_pairs": len(pairs)}
    if not pairs:
        return result
    differences = [a.summary["test_mae"] - b.summary["test_mae"] for a, b in pairs]
    result["delta_test_mae"] = float(np.mean(differences))
    if len(pairs) >= 2:
        statistic = ttest_rel([a.summary["test_mae"] for a, _ in pairs], [b.summary["test_mae"] for _, b in pairs])
        result["p_seeds"] = float(statistic.pvalue) if math.isfinite(statistic.pvalue) else None
    ids = sorted(set.intersection(*(set(a.test_errors) & set(b.test_errors) for a, b in pairs)))
    per_run = np.array([[a.test_errors[i] - b.test_errors[i] for i in ids] for a, b in pairs]).reshape(len(pairs), -1)
    finite = np.isfinite(per_run).all(axis=0)  # a diverged run's NaN errors would turn every draw into NaN
    if finite.any():
        draws = bootstrap_seeds_and_records(per_run[:, finite], seed=seed)
        result["bootstrap_ci"] = [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]
        tail = min((draws <= 0).sum(), (draws >= 0).sum())
        result["p_bootstrap"] = float(min(1.0, 2 * (tail + 1) / (draws.size + 1)))
        result["n_test_records"] = int(finite.sum())
    return result


def bootstrap_seeds_and_records(differences: np.ndarray, *, samples: int = BOOTSTRAP_SAMPLES,
                                seed: int = 0) -> np.ndarray:
    """Bootstrap distribution of the mean of a ``[seeds, records]`` matrix of paired error differences,
    resampling seed pairs and test records independently, both with replacement (a two-way bootstrap: its
    spread includes the training noise between seeds as well as the sampling of the test set). With one seed
    pair it is the usual bootstrap over records. With few seeds the seed part is approximate (resampling 3–5
    values underestimates their variance by (S − 1) / S), hence the t-test over seeds for decisions.

    Returns:
        ``[samples]`` bootstrap means.
    """
    rng = np.random.default_rng(seed)
    n_seeds, n_records = differences.shape
    seed_weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=samples) / n_seeds
    record_weights = rng.multinomial(n_records, np.full(n_records, 1 / n_records), size=samples) / n_records
    return np.einsum("sp,pn,sn->s", seed_weights, differences, record_weights)


def holm_adjust(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given (step-down, monotone, capped at 1).

    With m comparisons the k-th smallest p (k = 0, 1, …) is multiplied by m − k, and each adjusted value is
    at least the one before it in ascending order. A comparison is significant at level α after correction
    when its adjusted p is below α. (SciPy has no Holm procedure; statsmodels, which has, is not worth a
    dependency for these few lines.)
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - k) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _add_holm(rows: list[dict[str, Any]], prefix: str) -> None:
    """``<prefix>p_seeds_holm`` on every row with a seed-level p-value: Holm-adjusted across those rows
    (the family is every variant compared with the same baseline)."""
    tested = [r for r in rows if r.get(prefix + "p_seeds") is not None]
    for row, adjusted in zip(tested, holm_adjust([r[prefix + "p_seeds"] for r in tested]), strict=True):
        row[prefix + "p_seeds_holm"] = adjusted


def summarize(runs: list[RunInfo], baseline: str = "graph_only") -> list[dict[str, Any]]:
    """One row per label, ranked by mean validation MAE; seed-level p-values against the baseline are also
    given Holm-adjusted across the variants (``vs_<baseline>_p_seeds_holm``)."""
    groups: dict[str, list[RunInfo]] = {}
    for run in runs:
        groups.setdefault(run.label, []).append(run)
    base_runs = groups.get(baseline, [])
    rows = []
    for label, members in groups.items():
        val = _mean_std([r.summary["val_mae"] for r in members])
        test = _mean_std([r.summary["test_mae"] for r in members])
        row: dict[str, Any] = {
            "label": label,
            "n": len(members),
            "fusion": members[0].summary.get("fusion"),
            "seeds": sorted(r.seed for r in members),
            "val_mae_mean": val[0], "val_mae_std": val[1],
            "test_mae_mean": test[0], "test_mae_std": test[1],
            "n_params_fusion": int(np.mean([r.summary.get("n_params_fusion", 0) for r in members])),
            "train_seconds_mean": _mean_std([r.summary.get("train_seconds") for r in members])[0],
            "best_epoch_mean": _mean_std([r.summary.get("best_epoch") for r in members])[0],
            "deleted_text_mae_mean": _mean_std([r.deleted_mae for r in members])[0],
            "robustness_clean_mae_mean": _mean_std([r.robustness_clean_mae for r in members])[0],
        }
        for name in dict.fromkeys(n for r in members for n in r.class_mae):
            mean, std = _mean_std([r.class_mae.get(name) for r in members])
            row[f"test_mae_{name}_mean"], row[f"test_mae_{name}_std"] = mean, std
        if label != baseline and base_runs:
            row.update({f"vs_{baseline}_{k}": v for k, v in paired_test(members, base_runs).items()})
        row.update(_ensemble_columns(members))
        rows.append(row)
    _add_holm(rows, f"vs_{baseline}_")
    rows.sort(key=lambda r: (math.isnan(r["val_mae_mean"]), r["val_mae_mean"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def _ensemble_columns(members: list[RunInfo]) -> dict[str, Any]:
    """With ≥ 2 seeds: the seeds as an ensemble on the test set (``ensemble_mae``, ``spread_error_spearman``
    and its p-value, ``mean_spread``); the calibration curve is kept for the figure, not the tables."""
    result = ensemble_uncertainty([r.test_predictions for r in members if r.test_predictions is not None])
    if result is None:
        return {}
    return {"ensemble_mae": result["ensemble_mae"], "mean_spread": result["mean_spread"],
            "spread_error_spearman": result["spread_error_spearman"], "spread_error_p": result["spread_error_p"],
            "calibration": result["calibration"]}


GATE_SUFFIX = "_mean"


def robustness_summary(runs: list[RunInfo]) -> list[dict[str, Any]]:
    """Robustness curves over seeds: one row per label × strategy × mode × ratio with the test MAE
    (``mae_mean``, ``mae_std``) and every per-sample gate's mean (``gate_<key>``, ``gate_<key>_std``: mean and
    std over seeds of the run's mean gate value)."""
    groups: dict[tuple[str, str, str, float], list[dict[str, Any]]] = {}
    for run in runs:
        for row in run.robustness:
            groups.setdefault((run.label, row["strategy"], row["mode"], float(row["ratio"])), []).append(row)
    summary = []
    for (label, strategy, mode, ratio), rows in sorted(groups.items()):
        mae = _mean_std([float(r["mae"]) for r in rows])
        entry: dict[str, Any] = {"label": label, "strategy": strategy, "mode": mode, "ratio": ratio,
                                 "n_seeds": len(rows), "mae_mean": mae[0], "mae_std": mae[1]}
        gate_keys = sorted({k for r in rows for k in r if k.endswith(GATE_SUFFIX)})
        for key in gate_keys:
            mean, std = _mean_std([r.get(key) for r in rows])
            name = key[: -len(GATE_SUFFIX)]
            entry[f"gate_{name}"], entry[f"gate_{name}_std"] = mean, std
        summary.append(entry)
    return summary


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _mean_spread(mean: float, std: float | None) -> str:
    """``mean ± std``, or the mean alone when there is no spread (one seed)."""
    return _fmt(mean) if std is None else f"{_fmt(mean)} ± {_fmt(std)}"


def _deleted_text_cell(row: dict[str, Any]) -> str:
    """MAE with all text deleted, and in brackets the clean MAE on the same (robustness) records."""
    deleted, clean = row.get("deleted_text_mae_mean"), row.get("robustness_clean_mae_mean")
    if clean is None or math.isnan(clean):
        return _fmt(deleted)
    return f"{_fmt(deleted)} (clean {_fmt(clean)})"


def comparison_markdown(rows: list[dict[str, Any]], baseline: str) -> str:
    """The ranked table as Markdown (labels escaped)."""
    header = ("| rank | variant | n | val MAE | test MAE | Δ test vs " + escape_markdown(baseline)
              + " | p (seeds) | p (seeds, Holm) | bootstrap 95 % CI | p (bootstrap) | extra params | train s "
              "| epochs to best | MAE, text deleted |")
    lines = [header, "|" + "---|" * 14]
    for row in rows:
        prefix = f"vs_{baseline}_"
        ci = row.get(prefix + "bootstrap_ci")
        lines.append("| " + " | ".join([
            str(row["rank"]), escape_markdown(row["label"]), str(row["n"]),
            _mean_spread(row["val_mae_mean"], row["val_mae_std"]),
            _mean_spread(row["test_mae_mean"], row["test_mae_std"]),
            _fmt(row.get(prefix + "delta_test_mae")), _fmt(row.get(prefix + "p_seeds"), 3),
            _fmt(row.get(prefix + "p_seeds_holm"), 3),
            f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "–", _fmt(row.get(prefix + "p_bootstrap"), 3),
            f"{row['n_params_fusion']:,}", _fmt(row["train_seconds_mean"], 1), _fmt(row["best_epoch_mean"], 1),
            _deleted_text_cell(row),
        ]) + " |")
    notes = (
        "\nn: seeds per variant. Mean ± sample std over seeds (the mean alone for n = 1). Ranked by validation MAE (model selection never sees the test split). "
        f"Δ: test MAE minus the paired `{escape_markdown(baseline)}` run (same seed); p (seeds): paired t-test "
        "over seeds; Holm: the same p-values adjusted for comparing every variant with the baseline "
        "(significant at 5 % after correction when below 0.05); bootstrap: the mean per-test-record error "
        f"difference with seeds and test records both resampled, {BOOTSTRAP_SAMPLES} times. Negative Δ is better. "
        "MAE, text deleted: the robustness evaluation with "
        "every word deleted, next to the clean MAE on the same records (robustness may use part of the split).\n"
    )
    return "\n".join(lines) + "\n" + notes + _uncertainty_markdown(rows)


def _uncertainty_markdown(rows: list[dict[str, Any]]) -> str:
    """The seeds of each variant as an ensemble (variants with ≥ 2 seeds), or nothing."""
    rows = [r for r in rows if "spread_error_spearman" in r]
    if not rows:
        return ""
    intro = ("Uncertainty: each variant's seeds as an ensemble on the test set (mean prediction; spread = std "
             "over the seeds). ρ: Spearman's rank correlation of the spread with the ensemble's |error| (1: the "
             "spread ranks the errors perfectly); calibration in `comparison_calibration.png`.")
    lines = ["", intro, "",
             "| variant | n | ensemble MAE | mean spread | ρ (spread vs \\|error\\|) | p |", "|---|---|---|---|---|---|"]
    lines += [f"| {escape_markdown(r['label'])} | {r['n']} | {_fmt(r['ensemble_mae'])} | {_fmt(r['mean_spread'])} | "
              f"{_fmt(r['spread_error_spearman'], 3)} | {_fmt(r['spread_error_p'], 3)} |" for r in rows]
    return "\n".join(lines) + "\n"


def write_comparison(out: Path, runs: list[RunInfo], baseline: str) -> list[dict[str, Any]]:
    """``comparison.csv``, ``comparison.md``, ``comparison.json``, ``comparison_mae.png`` and
    ``comparison_forest.png`` (paired differences to the baseline, :func:`plot_paired_differences`) in ``out``; with
    robustness results also ``comparison_robustness.csv`` (curves over seeds, see :func:`robustness_summary`),
    ``comparison_robustness.png`` and ``comparison_gates.png`` (gate means against corruption)."""
    rows = summarize(runs, baseline)
    calibration = {row["label"]: row.pop("calibration") for row in rows if "calibration" in row}
    if calibration:
        save_figure(spread_calibration(calibration), out / COMPARISON_CALIBRATION_PNG)
    _write_table(out / COMPARISON_CSV, rows)
    write_text_atomic(out / COMPARISON_MD, "# Comparison\n\n" + comparison_markdown(rows, baseline))
    write_json_atomic(out / COMPARISON_JSON, {"baseline": baseline, "rows": rows,
                                              "runs": [str(r.run_dir) for r in runs]})
    save_figure(plot_mae_bars(rows), out / COMPARISON_MAE_PNG)
    if any(row.get(f"vs_{baseline}_delta_test_mae") is not None for row in rows):
        save_figure(plot_paired_differences(rows, baseline), out / COMPARISON_FOREST_PNG)
    else:  # no paired difference this time: an older figure would be shown by crysfuse report
        (out / COMPARISON_FOREST_PNG).unlink(missing_ok=True)
    if any(r.robustness for r in runs):
        curves = robustness_summary(runs)
        _write_table(out / COMPARISON_ROBUSTNESS_CSV, curves)
        save_figure(plot_robustness_overlay(curves), out / COMPARISON_ROBUSTNESS_PNG)
        if any(k.startswith("gate_") for row in curves for k in row):
            save_figure(plot_robustness_gates(curves), out / COMPARISON_GATES_PNG)
    return rows


def compare_runs(run_dirs: Iterable[str | Path], out: str | Path, baseline: str = "graph_only") -> list[dict[str, Any]]:
    """Read finished run directories and write their comparison into ``out`` (see :func:`write_comparison`)."""
    return write_comparison(Path(out), [read_run(r) for r in run_dirs], baseline)


def finished_runs(run_dirs: Iterable[str | Path]) -> list[Path]:
    """The run directories that hold a finished run; the others are named in a warning and left out."""
    run_dirs = [Path(r) for r in run_dirs]
    unfinished = [r for r in run_dirs if not rundir.has_summary(r)]
    if unfinished:
        logger.warning("skipping %d run directories without summary.json (not finished, or not runs): %s",
                       len(unfinished), ", ".join(map(str, unfinished)))
    return [r for r in run_dirs if r not in unfinished]


def _write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    write_csv_atomic(path, columns, ([_csv_cell(row.get(c)) for c in columns] for row in rows))


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return "" if value is None else value
