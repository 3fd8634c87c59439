"""The shape of a gate's distribution, so the rules judge the gate and not only its mean.

A mean can hide a switch: on the band gap, ``gated``'s effective weight is ≈ 0.09 for metals and ≈ 0.46 for
the rest, so its mean (0.29) sits below the suppression threshold although the text is routed, not suppressed.
This module summarises per-sample gate values ``[n]`` by quantiles, Sarle's bimodality coefficient, a
two-component Gaussian mixture (EM) with Ashman's D for how well its components separate, and, where the target defines classes (metal / non-metal for band gaps), the
gate's mean per class. :func:`switch_evidence` decides whether the gate is a two-mode switch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from crysfuse.config import ConfigError, MonitorConfig

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
BIMODALITY_THRESHOLD = 5 / 9
"""Sarle's bimodality coefficient of a uniform distribution; above it a distribution is likely bi- or
multimodal (Pfister et al. 2013, Front. Psychol. 4:700)."""
SEPARATION_THRESHOLD = 2.0
"""Ashman's D of the two fitted components above 2: they separate cleanly (Ashman et al. 1994)."""
MIN_MODE_FRACTION = 0.1
"""Each of the two groups must hold at least this fraction of the samples to count as a mode."""
MIN_MODE_GAP = 0.1
"""The two groups' (or classes') means must differ by at least this much (gates live in [0, 1])."""
MIN_SAMPLES = 20
"""Fewer samples are too few to tell one mode from two."""
MIN_CLASS_SAMPLES = 5
"""A class needs this many samples before its mean is reported or used."""
CLASS_EFFECT = 1.0
"""Class means count as a switch when they differ by at least this many pooled within-class stds."""
CLASS_RULES = ("auto", "on", "off")
BAND_GAP_TARGET = re.compile(r"gap", re.IGNORECASE)
"""``monitor.classes=auto`` applies the metal / non-metal rule to targets whose name matches this."""


@dataclass
class GateClasses:
    """Classes of the samples from their target values: ``labels`` ``[n]`` (0 or 1; -1 for an unknown
    target), ``names`` of class 0 (target ≤ threshold) and class 1, and the rule in words."""

    labels: np.ndarray
    names: tuple[str, str]
    rule: str


def target_classes(targets: np.ndarray | None, target_name: str, config: MonitorConfig) -> GateClasses | None:
    """The class of every sample, or ``None`` where the target defines no classes.

    ``monitor.classes``: ``auto`` (default) applies ``target ≤ monitor.class_threshold`` only to band-gap
    targets (name matching :data:`BAND_GAP_TARGET`), ``on`` to any target, ``off`` never.
    """
    if config.classes not in CLASS_RULES:
        raise ConfigError(f"monitor.classes must be one of {', '.join(CLASS_RULES)}, got '{config.classes}'")
    if targets is None or config.classes == "off":
        return None
    if config.classes == "auto" and not BAND_GAP_TARGET.search(target_name or ""):
        return None
    targets = np.asarray(targets, dtype=float)
    labels = np.where(np.isfinite(targets), (targets > config.class_threshold).astype(int), -1)
    low, high = (str(n) for n in config.class_names)
    return GateClasses(labels=labels, names=(low, high),
                       rule=f"{low}: {target_name or 'target'} ≤ {config.class_threshold:g}; {high}: above")


def quantiles(values: np.ndarray) -> dict[str, float]:
    """``q05``, ``q25``, ``q50``, ``q75``, ``q95`` of the finite values (``nan`` without any)."""
    finite = values[np.isfinite(values)]
    names = [f"q{round(q * 100):02d}" for q in QUANTILES]
    if finite.size == 0:
        return dict.fromkeys(names, math.nan)
    return {name: float(v) for name, v in zip(names, np.quantile(finite, QUANTILES))}


def bimodality_coefficient(values: np.ndarray) -> float:
    """Sarle's bimodality coefficient ``(g² + 1) / (k + 3(n − 1)² / ((n − 2)(n − 3)))`` with the sample
    skewness ``g`` and excess kurtosis ``k`` (bias-corrected); ``nan`` for n < 4 or constant values."""
    x = values[np.isfinite(values)]
    n = x.size
    if n < 4 or float(np.ptp(x)) == 0.0:
        return math.nan
    d = x - x.mean()
    m2, m3, m4 = (float(np.mean(d**p)) for p in (2, 3, 4))
    g = math.sqrt(n * (n - 1)) / (n - 2) * m3 / m2**1.5
    k = (n - 1) / ((n - 2) * (n - 3)) * ((n + 1) * (m4 / m2**2 - 3) + 6)
    return (g * g + 1) / (k + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))


def two_group_split(values: np.ndarray, iterations: int = 200) -> dict[str, float]:
    """Two groups of the values: a two-component Gaussian mixture fitted by EM (started from the Otsu split,
    the cut of the sorted values that maximises the between-group variance), with the components' means,
    stds and the low one's weight, Ashman's D = √2·|μ₁ − μ₀| / √(σ₀² + σ₁²) of the fitted components, and the
    Otsu cut as ``threshold``. (D of a hard split is not a test: the halves of one normal have D ≈ 2.65.)"""
    x = np.sort(values[np.isfinite(values)])
    nan = {"threshold": math.nan, "low_mean": math.nan, "high_mean": math.nan, "low_std": math.nan,
           "high_std": math.nan, "low_fraction": math.nan, "separation": math.nan}
    if x.size < 4 or x[0] == x[-1]:
        return nan
    n = x.size
    k = np.arange(1, n)
    cumulative = np.cumsum(x)[:-1]
    between = (k / n) * (1 - k / n) * ((x.sum() - cumulative) / (n - k) - cumulative / k) ** 2
    between[x[1:] == x[:-1]] = -1.0  # split only between distinct values
    cut = int(np.argmax(between)) + 1
    weight = np.array([cut / n, 1 - cut / n])
    mean = np.array([x[:cut].mean(), x[cut:].mean()])
    floor = (1e-3 * float(x[-1] - x[0])) ** 2  # keeps a component from collapsing onto repeated values
    var = np.array([x[:cut].var(), x[cut:].var()]) + floor
    for _ in range(iterations):
        density = weight / np.sqrt(2 * np.pi * var) * np.exp(-((x[:, None] - mean) ** 2) / (2 * var))
        responsibility = density / np.maximum(density.sum(axis=1, keepdims=True), 1e-300)
        total = responsibility.sum(axis=0)
        if (total < 1e-9).any():
            break
        new_mean = (responsibility * x[:, None]).sum(axis=0) / total
        var = (responsibility * (x[:, None] - new_mean) ** 2).sum(axis=0) / total + floor
        weight, converged, mean = total / n, bool(np.allclose(new_mean, mean, atol=1e-9)), new_mean
        if converged:
            break
    low, high = np.argsort(mean)
    std = np.sqrt(var)
    return {"threshold": float((x[cut - 1] + x[cut]) / 2), "low_mean": float(mean[low]),
            "high_mean": float(mean[high]), "low_std": float(std[low]), "high_std": float(std[high]),
            "low_fraction": float(weight[low]),
            "separation": float(math.sqrt(2) * (mean[high] - mean[low]) / math.sqrt(var[low] + var[high]))}


def class_means(values: np.ndarray, classes: GateClasses | None) -> dict[str, dict[str, float]] | None:
    """``{class name: {n, mean, std}}`` of the finite values per class (``None`` without classes)."""
    if classes is None:
        return None
    out = {}
    for label, name in enumerate(classes.names):
        member = values[(classes.labels == label) & np.isfinite(values)]
        out[name] = {"n": int(member.size), "mean": float(member.mean()) if member.size else math.nan,
                     "std": float(member.std()) if member.size else math.nan}
    return out


def describe(values: np.ndarray, classes: GateClasses | None = None) -> dict[str, Any]:
    """Quantiles, bimodality coefficient, two-group split, class means and the switch verdict of one gate
    (non-finite numbers as ``None``)."""
    finite = values[np.isfinite(values)]
    report: dict[str, Any] = {"count": int(finite.size), "quantiles": quantiles(values),
                              "bimodality_coefficient": bimodality_coefficient(values),
                              "split": two_group_split(values), "by_class": class_means(values, classes),
                              "class_rule": classes.rule if classes is not None else None}
    report["switch"] = switch_evidence(report)
    return json_safe(report)


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` (strict JSON, and equal after a JSON round trip)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def switch_evidence(report: dict[str, Any]) -> dict[str, Any] | None:
    """Why the gate is a two-mode switch, or ``None``: either two clear modes (bimodality coefficient above
    5/9, Ashman's D above 2, each mode ≥ 10 % of the samples, means ≥ 0.1 apart), or class means (each class
    with ≥ 5 samples) ≥ 0.1 apart and at least one pooled within-class std apart. Returns the low and high
    level and how they were found (``modes`` or ``classes``)."""
    by_class = report.get("by_class") or {}
    usable = {name: c for name, c in by_class.items() if c["n"] >= MIN_CLASS_SAMPLES}
    if len(usable) == 2:
        (name_a, a), (name_b, b) = sorted(usable.items(), key=lambda kv: kv[1]["mean"])
        pooled = math.sqrt((a["n"] * a["std"] ** 2 + b["n"] * b["std"] ** 2) / (a["n"] + b["n"]))
        gap = b["mean"] - a["mean"]
        if gap >= MIN_MODE_GAP and (pooled == 0 or gap / pooled >= CLASS_EFFECT):
            return {"by": "classes", "low": a["mean"], "high": b["mean"], "low_name": name_a, "high_name": name_b,
                    "effect": gap / pooled if pooled > 0 else math.inf}
    split, coefficient = report["split"], report["bimodality_coefficient"]
    if report["count"] < MIN_SAMPLES or not math.isfinite(coefficient):
        return None
    fraction = split["low_fraction"]
    if (coefficient > BIMODALITY_THRESHOLD and split["separation"] > SEPARATION_THRESHOLD
            and min(fraction, 1 - fraction) >= MIN_MODE_FRACTION
            and split["high_mean"] - split["low_mean"] >= MIN_MODE_GAP):
        return {"by": "modes", "low": split["low_mean"], "high": split["high_mean"], "low_fraction": fraction,
                "bimodality_coefficient": coefficient, "separation": split["separation"]}
    return None


def switch_text(key: str, evidence: dict[str, Any]) -> str:
    """One sentence naming the two levels of a switch."""
    if evidence["by"] == "classes":
        return (f"{key} is a switch between classes: {evidence['low_name']} {evidence['low']:.3f}, "
                f"{evidence['high_name']} {evidence['high']:.3f} ({evidence['effect']:.1f} within-class stds apart)")
    return (f"{key} has two modes: {evidence['low_fraction']:.0%} of samples at {evidence['low']:.3f}, the rest at "
            f"{evidence['high']:.3f} (bimodality coefficient {evidence['bimodality_coefficient']:.2f} > 0.56, "
            f"Ashman's D {evidence['separation']:.1f} > 2)")
