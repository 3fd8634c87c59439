"""``crysfuse diagnose``: why a trained fusion model does (or does not) use its text, and what to try next.

On N samples of a split the run is evaluated with clean text and with all text deleted; every per-sample gate
the model reports (read generically, as in :mod:`crysfuse.training.monitor`) is summarised, correlated with the
absolute error (Spearman) and grouped by element and crystal system; training stability is read from
``metrics.jsonl`` and the monitor's ``gate_statistics.json``. A recommendation follows the seed's decision
flow, each with the numbers that triggered it. See ``docs/monitor.md``.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from scipy.stats import spearmanr

from crysfuse.analysis import plots
from crysfuse.analysis.diagnosis_markdown import md, render_markdown  # noqa: F401 - md is re-exported
from crysfuse.analysis.robustness import EvaluationSet, load_evaluation_set
from crysfuse.config import MonitorConfig
from crysfuse.data.corruption import Corruption, corrupt_text
from crysfuse.data.dataset import with_text
from crysfuse.figures import save_figure
from crysfuse.io import write_json_atomic, write_text_atomic
from crysfuse.predict import Predictions, predict_items, regression_metrics
from crysfuse.rundir import read_gate_statistics, read_metrics
from crysfuse.rundir.layout import DIAGNOSIS_JSON_FILE, DIAGNOSIS_MD_FILE, DIAGNOSIS_PLOT_FILES
from crysfuse.training.gate_distribution import GateClasses, describe, switch_text, target_classes
from crysfuse.training.gate_rules import check_gate, gate_kind, hidden_switch, summarize

logger = logging.getLogger(__name__)

DELETE_ALL_TEXT = Corruption("random_word", "delete", 1.0)
TEXT_EFFECT_MIN_RELATIVE = 0.02
"""Deleting all text must raise the MAE by at least this fraction (and significantly) for the text to count."""
LOSS_SPIKE = 1.5
"""Unstable: an epoch's train loss above this multiple of the previous epoch's."""
VAL_SPIKE = 1.5
"""Unstable: an epoch's validation MAE above this multiple of the best one before it."""
BOOTSTRAP_SAMPLES = 2000
PLOT_FILES = DIAGNOSIS_PLOT_FILES


@dataclass
class Diagnosis:
    """The report (content of ``diagnosis.json``) and the per-sample predictions behind it."""

    report: dict[str, Any]
    clean: Predictions
    deleted: Predictions


def deleted_text_items(evaluation: EvaluationSet, *, seed: int = 0) -> list:
    """The evaluation items with all text deleted (the robustness command's ``random_word/delete/1``)."""
    prepared = evaluation.prepared
    if prepared.text_side is None:
        return evaluation.items
    texts = [corrupt_text(prepared.texts[i], DELETE_ALL_TEXT, record_id=i, seed=seed,
                          mask_token=prepared.text_side.encoder.mask_token) for i in evaluation.ids]
    return [with_text(item, enc) for item, enc in zip(evaluation.items, prepared.text_side.text_inputs(texts))]


def spearman(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Spearman rank correlation and its p-value (``nan`` for fewer than 3 points or constant input)."""
    mask = np.isfinite(x) & np.isfinite(y)
    x, y = x[mask], y[mask]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": math.nan, "p": math.nan, "n": int(x.size)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = spearmanr(x, y)
    return {"rho": float(result.statistic), "p": float(result.pvalue), "n": int(x.size)}


def crystal_info(evaluation: EvaluationSet) -> dict[str, tuple[str, list[str]]]:
    """Crystal system (SpacegroupAnalyzer, symprec 0.1; ``unknown`` on failure) and elements per record id."""
    info: dict[str, tuple[str, list[str]]] = {}
    for record in evaluation.records:
        try:
            system = SpacegroupAnalyzer(record.structure, symprec=0.1).get_crystal_system()
        except Exception:  # noqa: BLE001 - spglib fails on some odd cells; that crystal is just "unknown"
            system = "unknown"
        info[record.id] = (str(system), sorted({str(e) for e in record.structure.composition.elements}))
    return info


def grouped(ids: list[str], groups: dict[str, list[str]], abs_error: np.ndarray,
            gates: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Count, MAE and mean of every gate per group (a sample may belong to several groups)."""
    members: dict[str, list[int]] = {}
    for index, record_id in enumerate(ids):
        for group in groups.get(record_id, ["unknown"]):
            members.setdefault(group, []).append(index)
    return {group: {"n": len(rows), "mae": float(np.nanmean(abs_error[rows])),
                    **{key: float(np.nanmean(values[rows])) for key, values in sorted(gates.items())}}
            for group, rows in sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0]))}


def mae_by_class(clean: Predictions, deleted: Predictions, classes: GateClasses | None,
                 gates: dict[str, np.ndarray]) -> dict[str, dict[str, float]] | None:
    """Per target class (``None`` without classes): n, MAE with clean text and with all text deleted, their
    difference Δ = MAE(deleted) − MAE(clean), and the mean of every gate (clean text)."""
    if classes is None:
        return None
    out: dict[str, dict[str, float]] = {}
    for label, name in enumerate(classes.names):
        rows = (classes.labels == label) & np.isfinite(clean.target)
        n = int(rows.sum())
        mae = float(np.mean(np.abs(clean.prediction - clean.target)[rows])) if n else math.nan
        mae_deleted = float(np.mean(np.abs(deleted.prediction - deleted.target)[rows])) if n else math.nan
        out[name] = {"n": n, "mae_clean": mae, "mae_text_deleted": mae_deleted, "delta_mae": mae_deleted - mae,
                     **{key: float(np.mean(values[rows])) if n else math.nan for key, values in sorted(gates.items())}}
    return out


def text_effect(clean: Predictions, deleted: Predictions, *, seed: int = 0) -> dict[str, Any]:
    """MAE with and without text, the paired bootstrap 95 % interval of the difference, and whether the text
    helps measurably (MAE up by at least :data:`TEXT_EFFECT_MIN_RELATIVE` and the interval above 0)."""
    mask = np.isfinite(clean.target)
    diff = np.abs(deleted.prediction - deleted.target)[mask] - np.abs(clean.prediction - clean.target)[mask]
    mae = float(np.mean(np.abs(clean.prediction - clean.target)[mask])) if mask.any() else math.nan
    delta = float(diff.mean()) if diff.size else math.nan
    if diff.size:
        rng = np.random.default_rng(seed)
        means = diff[rng.integers(0, diff.size, size=(BOOTSTRAP_SAMPLES, diff.size))].mean(axis=1)
        low, high = (float(v) for v in np.percentile(means, [2.5, 97.5]))
    else:
        low = high = math.nan
    relative = delta / mae if mae > 0 else math.nan
    return {"mae_clean": mae, "mae_text_deleted": mae + delta, "delta_mae": delta, "relative": relative,
            "ci95": [low, high], "min_relative": TEXT_EFFECT_MIN_RELATIVE,
            "measurable": bool(relative >= TEXT_EFFECT_MIN_RELATIVE and low > 0)}


def training_stability(run_dir: Path, *, augmented: bool = False) -> dict[str, Any]:
    """Loss and validation spikes from ``metrics.jsonl`` and the monitor's warnings by rule.

    ``augmented``: the run trained with text-corruption augmentation. A monitor from before the jump rule knew
    about augmentation (its statistics have no ``augmented`` entry) compared means over clean and corrupted
    samples alike, so its jump warnings are reported but not counted as instability."""
    rows = read_metrics(run_dir)
    losses = [float(r.get("train_loss", math.nan)) for r in rows]
    val = [float(r.get("val_mae", math.nan)) for r in rows]
    loss_spikes = [{"epoch": rows[i].get("epoch", i), "ratio": losses[i] / losses[i - 1]}
                   for i in range(1, len(rows)) if losses[i - 1] > 0 and losses[i] > LOSS_SPIKE * losses[i - 1]]
    val_spikes = [{"epoch": rows[i].get("epoch", i), "ratio": val[i] / min(val[:i])}
                  for i in range(1, len(rows)) if min(val[:i]) > 0 and val[i] > VAL_SPIKE * min(val[:i])]
    non_finite = [rows[i].get("epoch", i) for i, v in enumerate(losses) if not math.isfinite(v)]
    statistics = read_gate_statistics(run_dir)
    by_rule = statistics.get("warnings_by_rule", {}) if statistics is not None else None
    reasons = []
    if non_finite:
        reasons.append(f"non-finite train loss in epoch(s) {non_finite}")
    if loss_spikes:
        reasons.append(f"train loss rose > {LOSS_SPIKE}x epoch over epoch {len(loss_spikes)} time(s), "
                       f"max {max(s['ratio'] for s in loss_spikes):.2f}x")
    if val_spikes:
        reasons.append(f"val MAE rose > {VAL_SPIKE}x its best so far {len(val_spikes)} time(s), "
                       f"max {max(s['ratio'] for s in val_spikes):.2f}x")
    notes = []
    for rule in ("jump", "non_finite"):
        if by_rule and by_rule.get(rule):
            if rule == "jump" and augmented and statistics is not None and "augmented" not in statistics:
                notes.append(f"{by_rule[rule]} 'jump' warning(s) from a monitor that mixed clean and corrupted "
                             "samples under text augmentation: not counted")
                continue
            reasons.append(f"gate monitor: {by_rule[rule]} '{rule}' warning(s)")
    return {"epochs": len(rows), "train_loss": losses, "val_mae": val, "loss_spikes": loss_spikes,
            "val_spikes": val_spikes, "non_finite_epochs": non_finite, "monitor_warnings_by_rule": by_rule,
            "unstable": bool(reasons), "reasons": reasons, "notes": notes}


def recommend(report: dict[str, Any], config: MonitorConfig) -> list[dict[str, Any]]:
    """The seed's decision flow, each step with the numbers that triggered it (first match first)."""
    recs = []
    n = report["n_samples"]
    gates = [(key, gate_kind(key), gate["clean"]["mean"]) for key, gate in report["gates"].items()]
    switches = {key: gate.get("distribution") for key, gate in report["gates"].items()}
    for key, kind, mean in sorted(gates, key=lambda g: g[1] != "effective"):  # effective first, as in the flow
        if kind in ("effective", "quality") and hidden_switch(
                switches[key], config.effective_low if kind == "effective" else config.quality_low):
            continue  # a two-mode gate whose mean falls below the threshold is a switch (see report["notes"])
        if kind == "effective" and mean < config.effective_low:
            recs.append({"action": "use `simplified`", "trigger": "effective_low", "numbers": {
                "gate": key, "mean": mean, "threshold": config.effective_low, "n": n},
                "reason": f"mean `{key}` text weight {mean:.3f} < {config.effective_low} on {n} samples: the "
                          "double gate suppresses the text; one gate keeps it usable"})
        if kind == "quality" and mean < config.quality_low:
            recs.append({"action": "use `quality`", "trigger": "quality_low", "numbers": {
                "gate": key, "mean": mean, "threshold": config.quality_low, "n": n},
                "reason": f"mean `{key}` score {mean:.3f} < {config.quality_low} on {n} samples: the quality "
                          "gate judges the text useless; the learnable quality gate can recalibrate"})
    stability = report["stability"]
    if stability["unstable"]:
        recs.append({"action": "use `warmup`", "trigger": "unstable_training",
                     "numbers": {"reasons": stability["reasons"]},
                     "reason": "unstable training: " + "; ".join(stability["reasons"])})
    effect = report["text_effect"]
    if effect is not None and not effect["measurable"]:
        recs.append({"action": "graph-only is as good", "trigger": "no_text_effect", "numbers": effect,
                     "reason": f"deleting all text changes the MAE by {effect['delta_mae']:+.4f} "
                               f"({effect['relative']:+.1%}; 95 % CI [{effect['ci95'][0]:+.4f}, "
                               f"{effect['ci95'][1]:+.4f}]) on {n} samples: the text adds nothing measurable"})
    if not recs:
        reason = "no gate below its threshold, stable training"
        if effect is not None:
            reason += (f", and deleting the text raises the MAE by {effect['delta_mae']:+.4f} "
                       f"({effect['relative']:+.1%})")
        switched = [note for note in report.get("notes", []) if "switch" in note or "two modes" in note]
        if switched:
            reason += "; a gate mean below its threshold is a switch, not suppression: " + "; ".join(switched)
        recs.append({"action": "keep the current model", "trigger": "healthy", "numbers": effect or {},
                     "reason": reason if report["uses_text"] else "the model uses no text"})
    return recs


def diagnose(run_dir: str | Path, *, split: str = "test", data: str | None = None,
             n_samples: int | None = None, seed: int = 0, batch_size: int = 64) -> Diagnosis:
    """Evaluate and analyse a run (see the module docstring); nothing is written."""
    run_dir = Path(run_dir)
    evaluation = load_evaluation_set(run_dir, split=split, data=data, limit=n_samples)
    model, config = evaluation.loaded.model, evaluation.loaded.config
    clean = predict_items(model, evaluation.ids, evaluation.items, batch_size=batch_size)
    deleted = predict_items(model, evaluation.ids, deleted_text_items(evaluation, seed=seed),
                            batch_size=batch_size)
    abs_error = np.abs(clean.prediction - clean.target)
    info = crystal_info(evaluation)
    classes = target_classes(clean.target, config.data.target, config.monitor)
    augmented = config.train.text_corruption.probability > 0
    uses_text = bool(model.uses_text)
    report: dict[str, Any] = {
        "run": str(run_dir), "split": split, "n_samples": len(evaluation.ids), "uses_text": uses_text,
        "fusion": config.fusion.name,
        "metrics": {"clean": regression_metrics(clean.target, clean.prediction),
                    "text_deleted": regression_metrics(deleted.target, deleted.prediction)},
        "text_effect": text_effect(clean, deleted, seed=seed) if uses_text else None,
        "gates": {key: {"kind": gate_kind(key), "clean": summarize(values),
                        "text_deleted": summarize(deleted.gates.get(key, np.zeros(0))),
                        "spearman_abs_error": spearman(values, abs_error),
                        "distribution": describe(values, classes)}
                  for key, values in sorted(clean.gates.items())},
        "class_rule": classes.rule if classes is not None else None,
        "by_class": mae_by_class(clean, deleted, classes, clean.gates),
        "by_crystal_system": grouped(clean.ids, {i: [v[0]] for i, v in info.items()}, abs_error, clean.gates),
        "by_element": grouped(clean.ids, {i: v[1] for i, v in info.items()}, abs_error, clean.gates),
        "stability": training_stability(run_dir, augmented=augmented),
        "findings": [{"gate": key, "rule": rule, "value": value, "threshold": threshold, "message": message}
                     for key, values in sorted(clean.gates.items())
                     for rule, value, threshold, message in check_gate(key, values, config.monitor,
                                                                       classes=classes)],
        "largest_errors": [{"id": clean.ids[i], "target": float(clean.target[i]),
                            "prediction": float(clean.prediction[i]), "abs_error": float(abs_error[i])}
                           for i in np.argsort(-np.nan_to_num(abs_error, nan=-1.0))[:5]],
    }
    report["notes"] = [switch_text(key, gate["distribution"]["switch"]) for key, gate in report["gates"].items()
                       if gate["distribution"]["switch"] is not None] + report["stability"]["notes"]
    report["recommendations"] = recommend(report, config.monitor)
    for rec in report["recommendations"]:
        logger.info("recommendation: %s (%s)", rec["action"], rec["reason"])
    return Diagnosis(report=report, clean=clean, deleted=deleted)


def strict_json(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` (standard JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_diagnosis(diagnosis: Diagnosis, out_dir: str | Path) -> list[Path]:
    """Write ``diagnosis.json``, ``diagnosis.md`` and the plots to ``out_dir``; returns the paths."""
    out_dir, report = Path(out_dir), diagnosis.report
    clean, deleted = diagnosis.clean, diagnosis.deleted
    write_json_atomic(out_dir / DIAGNOSIS_JSON_FILE, strict_json(report))
    write_text_atomic(out_dir / DIAGNOSIS_MD_FILE, render_markdown(report))
    rho = {key: gate["spearman_abs_error"]["rho"] for key, gate in report["gates"].items()}
    mae = {key: metrics["mae"] for key, metrics in report["metrics"].items()}
    figures = (plots.gate_histograms(clean, deleted), plots.gate_vs_error(clean, rho), plots.parity(clean, deleted, mae))
    for figure, name in zip(figures, PLOT_FILES):
        save_figure(figure, out_dir / name)
    return [out_dir / DIAGNOSIS_JSON_FILE, out_dir / DIAGNOSIS_MD_FILE, *(out_dir / name for name in PLOT_FILES)]
