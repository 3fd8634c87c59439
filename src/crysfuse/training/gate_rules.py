"""The anomaly rules of the fusion gates, shared by the training-time :class:`~crysfuse.training.monitor.GateMonitor`
and ``crysfuse diagnose``.

They read only the documented diagnostics contract (:mod:`crysfuse.fusion.base`): every 1-D tensor is a
per-sample gate ``k``; ``k_mean``/``k_std``/``k_min``/``k_max`` are its summaries; any other 0-dim value is a
scalar. Which rules watch a gate depends only on the last ``_``-separated part of its key (see
:func:`gate_kind`), never on the fusion variant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from crysfuse.config import MonitorConfig
from crysfuse.training.gate_distribution import GateClasses, describe, switch_text

SUMMARY_SUFFIXES = ("_mean", "_std", "_min", "_max")


def gate_kind(key: str) -> str:
    """The rule family of a gate key: its last ``_``-separated part (``effective``, ``quality``, ``gate``,
    ``saturation``, ``entropy``, ...): ``middle2_gate`` is a ``gate``, ``middle2_gate_saturation`` not."""
    return key.rsplit("_", 1)[-1]


def split_diagnostics(diagnostics: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per-sample gates (1-D, as float64 arrays) and extra 0-dim scalars; gate summaries are dropped."""
    gates: dict[str, np.ndarray] = {}
    scalars: dict[str, float] = {}
    for key, value in diagnostics.items():
        array = np.asarray(value.detach().cpu().double() if hasattr(value, "detach") else value, dtype=float)
        if array.ndim == 1:
            gates[key] = array
        elif array.ndim == 0:
            scalars[key] = float(array)
    summaries = {gate + suffix for gate in gates for suffix in SUMMARY_SUFFIXES}
    return gates, {key: value for key, value in scalars.items() if key not in summaries}


def summarize(values: np.ndarray) -> dict[str, float]:
    """mean/std/min/max/count of the finite values (``nan`` when there are none)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "count": 0}
    return {"mean": float(finite.mean()), "std": float(finite.std()), "min": float(finite.min()),
            "max": float(finite.max()), "count": int(finite.size)}


INFORMATIONAL_RULES = ("switch",)
"""Findings that describe a gate rather than flag a problem (logged at INFO, not counted as instability)."""


def hidden_switch(distribution: dict[str, Any] | None, threshold: float) -> bool:
    """Whether a gate's distribution (:func:`~crysfuse.training.gate_distribution.describe`) is a two-mode
    switch whose upper level reaches ``threshold``: a mean below the threshold then hides a switch."""
    evidence = (distribution or {}).get("switch")
    return evidence is not None and evidence["high"] >= threshold


def low_mean_rule(rule: str, key: str, values: np.ndarray, mean: float, threshold: float, problem: str,
                  classes: GateClasses | None, where: str = "") -> tuple[str, float, float, str]:
    """A rule that fires on a mean below ``threshold``, read with the gate's distribution: when the mean hides
    a two-mode switch whose upper level reaches the threshold (see :func:`switch_evidence`), the finding is a
    ``switch``, not ``rule``; otherwise ``rule`` with the median and the fraction of samples below.
    ``where`` names the samples judged (e.g. `` (samples with clean text)``)."""
    report = describe(values, classes)
    evidence = report["switch"]
    if hidden_switch(report, threshold):
        return ("switch", mean, threshold, f"{key} mean{where} {mean:.3f} < {threshold} hides a switch, not "
                f"'{rule}': " + switch_text(key, evidence))
    finite = values[np.isfinite(values)]
    below = float(np.mean(finite < threshold))
    message = (f"{key} mean{where} {mean:.3f} < {threshold} (median {report['quantiles']['q50']:.3f}, "
               f"{below:.0%} of samples below, one mode): {problem}")
    return (rule, mean, threshold, message)


CLEAN_TEXT = " (samples with clean text)"
MIN_CLEAN_SAMPLES = 8
"""Under augmentation the mean-based rules need this many clean-text samples in a check window."""


def check_gate(key: str, values: np.ndarray, config: MonitorConfig, previous_mean: float | None = None, *,
               classes: GateClasses | None = None, clean: np.ndarray | None = None,
               jump_threshold: float | None = None) -> list[tuple[str, float, float, str]]:
    """Apply the anomaly rules to one gate's per-sample ``values`` ``[n]``; returns ``(rule, value, threshold,
    message)`` for every rule that fires.

    Args:
        previous_mean: The mean at the previous check (over the clean-text samples when ``clean`` is given);
            ``jump`` runs only when it is given.
        classes: The samples' target classes (:func:`~crysfuse.training.gate_distribution.target_classes`):
            class means can reveal a switch the pooled values blur.
        clean: ``[n]`` bool, True where the text is clean (under text augmentation): the rules on the gate's
            level (suppression, low quality, gate range, switch, jump) judge those samples only — a gate is
            meant to treat corrupted text differently — and are skipped with fewer than
            :data:`MIN_CLEAN_SAMPLES` of them; saturation, collapse and non-finite values read every sample.
        jump_threshold: Default ``config.jump``.
    """
    fired: list[tuple[str, float, float, str]] = []
    finite = values[np.isfinite(values)]
    if finite.size < values.size:
        bad = float(1 - finite.size / values.size)
        fired.append(("non_finite", bad, 0.0, f"{key}: {bad:.0%} of the values are NaN/inf"))
    if finite.size == 0:
        return fired
    kind, mean = gate_kind(key), float(finite.mean())
    fired += _level_rules(key, kind, values, config, previous_mean, classes, clean, jump_threshold)
    fired += _spread_rules(key, kind, finite, mean, config)
    return fired


def _level_rules(key: str, kind: str, values: np.ndarray, config: MonitorConfig, previous_mean: float | None,
                 classes: GateClasses | None, clean: np.ndarray | None,
                 jump_threshold: float | None) -> list[tuple[str, float, float, str]]:
    """The rules on the gate's level (its mean, read with its distribution) and the jump rule."""
    where = ""
    if clean is not None:
        mask = np.asarray(clean, dtype=bool)
        values, where = values[mask], CLEAN_TEXT
        classes = None if classes is None else GateClasses(classes.labels[mask], classes.names, classes.rule)
    finite = values[np.isfinite(values)]
    if finite.size == 0 or (clean is not None and finite.size < MIN_CLEAN_SAMPLES):
        return []
    fired = []
    mean = float(finite.mean())
    if kind == "effective" and mean < config.effective_low:
        fired.append(low_mean_rule("suppression", key, values, mean, config.effective_low,
                                   "the text is suppressed", classes, where))
    if kind == "quality" and mean < config.quality_low:
        fired.append(low_mean_rule("low_quality", key, values, mean, config.quality_low,
                                   "the text is judged useless", classes, where))
    if kind == "gate" and mean < config.gate_low:
        fired.append(low_mean_rule("gate_range", key, values, mean, config.gate_low,
                                   f"outside [{config.gate_low}, {config.gate_high}], the text is hardly used",
                                   classes, where))
    if kind == "gate" and mean > config.gate_high:
        message = (f"{key} mean{where} {mean:.3f} outside [{config.gate_low}, {config.gate_high}]: "
                   "over-reliance on the text")
        fired.append(("gate_range", mean, config.gate_high, message))
    threshold = config.jump if jump_threshold is None else jump_threshold
    if previous_mean is not None and math.isfinite(previous_mean) and abs(mean - previous_mean) > threshold:
        fired.append(("jump", abs(mean - previous_mean), threshold,
                      f"{key} mean{where} jumped {previous_mean:.3f} -> {mean:.3f} (|change| > {threshold})"))
    return fired


def _spread_rules(key: str, kind: str, finite: np.ndarray, mean: float,
                  config: MonitorConfig) -> list[tuple[str, float, float, str]]:
    """Saturation and collapse."""
    fired = []
    if kind == "saturation" and mean > config.saturation_fraction:
        fired.append(("saturation", mean, config.saturation_fraction,
                      f"{key} mean {mean:.3f} > {config.saturation_fraction}: the gate is saturated"))
    elif kind not in ("saturation", "entropy"):
        saturated = float(np.mean((finite < config.saturation_low) | (finite > config.saturation_high)))
        if saturated > config.saturation_fraction:
            fired.append(("saturation", saturated, config.saturation_fraction,
                          f"{key}: {saturated:.1%} of samples outside [{config.saturation_low}, "
                          + f"{config.saturation_high}]"))
    if kind != "saturation" and finite.size >= 2 and float(finite.std()) < config.collapse_std:
        std = float(finite.std())
        fired.append(("collapse", std, config.collapse_std,
                      f"{key} std {std:.2e} < {config.collapse_std}: every sample gets the same gate"))
    return fired


def threshold_lines(key: str, config: MonitorConfig) -> list[tuple[float, str]]:
    """The rule thresholds drawn on a gate's trajectory: ``(value, label)``; ``saturation`` labels the band."""
    kind = gate_kind(key)
    band = [] if kind in ("saturation", "entropy") else [(config.saturation_low, "saturation"),
                                                            (config.saturation_high, "")]
    return {"effective": [(config.effective_low, "suppression")], "quality": [(config.quality_low, "low quality")],
            "gate": [(config.gate_low, "gate low"), (config.gate_high, "gate high")],
            "saturation": [(config.saturation_fraction, "saturated")]}.get(kind, []) + band
