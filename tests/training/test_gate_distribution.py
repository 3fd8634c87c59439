"""Gate rules that read the gate's distribution: a switch is not suppression, classes from the target, and the
jump rule under text augmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from crysfuse.config import ConfigError, MonitorConfig
from crysfuse.fusion.base import gate_diagnostics
from crysfuse.training.gate_distribution import (
    bimodality_coefficient,
    describe,
    quantiles,
    target_classes,
    two_group_split,
)
from crysfuse.training.gate_rules import check_gate
from crysfuse.training.monitor import GateMonitor

RNG = np.random.default_rng(0)
# The real-data case (docs/results.md): 43 % metals with w ≈ 0.09, the rest ≈ 0.46; mean ≈ 0.30 (here 0.44, so the mean is below 0.3).
BAND_GAP = np.where(np.arange(400) < 172, 0.0, RNG.uniform(0.2, 5.0, 400))
BIMODAL = np.where(BAND_GAP == 0, RNG.normal(0.09, 0.03, 400), RNG.normal(0.44, 0.06, 400)).clip(0, 1)
UNIMODAL_LOW = RNG.beta(2, 12, 400)  # a low, skewed, one-mode gate (mean ≈ 0.14)


def _rules(fired) -> list[str]:
    return [f[0] for f in fired]


def test_bimodality_coefficient_and_split_on_known_shapes():
    assert bimodality_coefficient(RNG.normal(0.5, 0.1, 2000)) == pytest.approx(1 / 3, abs=0.03)
    assert bimodality_coefficient(np.r_[np.zeros(50), np.ones(50)]) > 0.9  # two point masses
    assert bimodality_coefficient(BIMODAL) > 5 / 9 > bimodality_coefficient(UNIMODAL_LOW)
    split = two_group_split(BIMODAL)
    assert split["low_mean"] == pytest.approx(0.09, abs=0.02) and split["high_mean"] == pytest.approx(0.44, abs=0.02)
    assert split["low_fraction"] == pytest.approx(0.43, abs=0.03) and split["separation"] > 2
    # A hard split of one normal would give Ashman's D ≈ 2.65; the fitted mixture's components overlap.
    assert two_group_split(RNG.normal(0.5, 0.1, 2000))["separation"] < 2
    assert two_group_split(UNIMODAL_LOW)["separation"] < 2
    assert math.isnan(bimodality_coefficient(np.full(10, 0.3)))
    assert quantiles(np.arange(101) / 100)["q50"] == pytest.approx(0.5)


def test_a_bimodal_gate_is_a_switch_not_suppression():
    assert BIMODAL.mean() < 0.3
    fired = check_gate("effective", BIMODAL, MonitorConfig())
    assert _rules(fired) == ["switch"]
    assert "hides a switch" in fired[0][3] and "two modes" in fired[0][3]


def test_a_unimodal_low_gate_still_triggers_suppression():
    fired = check_gate("effective", UNIMODAL_LOW, MonitorConfig())
    assert _rules(fired) == ["suppression"]
    assert "one mode" in fired[0][3]
    # Two modes both below the threshold: still suppression.
    both_low = np.r_[RNG.normal(0.05, 0.01, 100), RNG.normal(0.25, 0.01, 100)].clip(0, 1)
    assert describe(both_low)["switch"] is not None
    assert _rules(check_gate("effective", both_low, MonitorConfig())) == ["suppression"]


def test_the_same_reading_applies_to_quality_and_gate_means():
    assert _rules(check_gate("quality", BIMODAL + 0.1, MonitorConfig())) == ["switch"]
    assert _rules(check_gate("middle0_gate", BIMODAL, MonitorConfig())) == ["switch"]
    assert _rules(check_gate("gate", UNIMODAL_LOW, MonitorConfig())) == ["gate_range"]


def test_classes_apply_to_band_gaps_only_unless_asked():
    config = MonitorConfig()
    classes = target_classes(BAND_GAP, "gap pbe", config)
    assert classes.names == ("metal", "non-metal") and int((classes.labels == 0).sum()) == 172
    assert target_classes(BAND_GAP, "formation_energy_peratom", config) is None
    assert target_classes(BAND_GAP, "gap pbe", MonitorConfig(classes="off")) is None
    named = target_classes(BAND_GAP, "bulk modulus", MonitorConfig(classes="on", class_threshold=1.0,
                                                                    class_names=["soft", "hard"]))
    assert named.names == ("soft", "hard") and "≤ 1" in named.rule
    assert (target_classes(np.array([np.nan, 0.0]), "gap", config).labels == [-1, 0]).all()
    with pytest.raises(ConfigError, match="monitor.classes"):
        target_classes(BAND_GAP, "gap", MonitorConfig(classes="metals"))


def test_class_means_reveal_a_switch_that_the_pooled_values_blur():
    """Overlapping modes (no clear bimodality) that follow the metal / non-metal classes: a switch by class."""
    blurred = np.where(BAND_GAP == 0, RNG.normal(0.2, 0.08, 400), RNG.normal(0.35, 0.08, 400)).clip(0, 1)
    assert blurred.mean() < 0.3 and describe(blurred)["switch"] is None
    assert _rules(check_gate("effective", blurred, MonitorConfig())) == ["suppression"]
    classes = target_classes(BAND_GAP, "gap pbe", MonitorConfig())
    report = describe(blurred, classes)
    assert report["by_class"]["metal"]["mean"] == pytest.approx(blurred[BAND_GAP == 0].mean())
    assert report["switch"]["by"] == "classes"
    fired = check_gate("effective", blurred, MonitorConfig(), classes=classes)
    assert _rules(fired) == ["switch"] and "metal" in fired[0][3]


def _batch(values: np.ndarray) -> dict[str, torch.Tensor]:
    return gate_diagnostics("fusion", torch.as_tensor(values, dtype=torch.float32))


def test_jump_rule_compares_clean_samples_under_augmentation():
    """Clean-text gates stay at 0.6 while the corrupted share of the window swings: the mixture's mean jumps,
    the clean mean does not. Without augmentation a real jump still fires."""
    clean, corrupted = np.full(32, 0.6) + np.linspace(0, 0.02, 32), np.full(32, 0.1)
    mask_few, mask_many = np.arange(32) < 4, np.arange(32) < 28
    mixed_few = np.where(mask_few, corrupted, clean)
    mixed_many = np.where(mask_many, corrupted, clean)
    assert abs(mixed_few.mean() - mixed_many.mean()) > 0.2
    plain = GateMonitor(config=MonitorConfig(check_interval=1))
    for step, values in enumerate([mixed_few, mixed_many]):
        plain.update(_batch(values), step)
    assert [w.rule for w in plain.warnings] == ["jump"]
    augmented = GateMonitor(config=MonitorConfig(check_interval=1), augmented=True)
    for step, (values, mask) in enumerate([(mixed_few, mask_few), (mixed_many, mask_many)]):
        augmented.update(_batch(values), step, corrupted=torch.as_tensor(mask))
    assert augmented.warnings == []
    augmented.update(_batch(np.where(mask_few, corrupted, clean - 0.4)), 2, corrupted=torch.as_tensor(mask_few))
    assert [w.rule for w in augmented.warnings] == ["jump"] and "clean text" in augmented.warnings[0].message


def test_jump_rule_without_flags_uses_the_augmented_threshold():
    monitor = GateMonitor(config=MonitorConfig(check_interval=1, jump=0.2, jump_augmented=0.35), augmented=True)
    for step, level in enumerate([0.6, 0.35, 0.75]):
        monitor.update(_batch(np.full(16, level) + np.linspace(0, 0.01, 16)), step)
    assert [(w.rule, w.threshold) for w in monitor.warnings] == [("jump", 0.35)]  # 0.25 passes, 0.40 fires


def test_monitor_reports_the_distribution_and_class_means_per_epoch(tmp_path):
    monitor = GateMonitor(config=MonitorConfig(check_interval=5), out_dir=tmp_path, target="gap pbe")
    for step in range(10):
        rows = slice(step * 40, (step + 1) * 40)
        monitor.update(gate_diagnostics("effective", torch.as_tensor(BIMODAL[rows], dtype=torch.float32)), step,
                       targets=torch.as_tensor(BAND_GAP[rows]))
    statistics = monitor.finish()
    distribution = statistics["gates"]["effective"]["last_epoch_distribution"]
    assert distribution["switch"] is not None and distribution["bimodality_coefficient"] > 5 / 9
    assert distribution["by_class"]["metal"]["mean"] == pytest.approx(BIMODAL[BAND_GAP == 0].mean())
    assert set(distribution["quantiles"]) == {"q05", "q25", "q50", "q75", "q95"}
    assert "suppression" not in statistics["warnings_by_rule"] and statistics["warnings_by_rule"]["switch"] >= 1


def test_level_rules_judge_the_clean_text_samples_under_augmentation():
    """A quality gate that scores corrupted text low and clean text high is doing its job: with the clean mask
    the low mean of the mixture is not 'the text is judged useless'; too few clean samples: no verdict."""
    corrupted = np.arange(200) < 120
    quality = np.where(corrupted, RNG.normal(0.2, 0.03, 200), RNG.normal(0.7, 0.03, 200))
    assert quality.mean() < 0.5
    assert _rules(check_gate("quality", quality, MonitorConfig())) == ["switch"]  # unmasked: two modes
    assert check_gate("quality", quality, MonitorConfig(), clean=~corrupted) == []
    low_everywhere = np.full(200, 0.2) + np.linspace(0, 0.05, 200)
    fired = check_gate("quality", low_everywhere, MonitorConfig(), clean=~corrupted)
    assert _rules(fired) == ["low_quality"] and "samples with clean text" in fired[0][3]
    assert check_gate("quality", low_everywhere, MonitorConfig(), clean=np.arange(200) < 5) == []


def test_monitor_distribution_under_augmentation_reads_clean_samples():
    monitor = GateMonitor(config=MonitorConfig(check_interval=100), augmented=True)
    corrupted = np.arange(64) % 2 == 0
    values = np.where(corrupted, 0.1, 0.6) + np.linspace(0, 0.02, 64)
    monitor.update(gate_diagnostics("quality", torch.as_tensor(values, dtype=torch.float32)), 0,
                   corrupted=torch.as_tensor(corrupted))
    monitor.end_epoch()
    distribution = monitor.statistics()["gates"]["quality"]["last_epoch_distribution"]
    assert distribution["samples"] == "clean text" and distribution["count"] == 32
    assert distribution["quantiles"]["q05"] > 0.55 and monitor.warnings == []
