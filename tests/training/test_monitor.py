"""GateMonitor: anomaly rules on constructed diagnostics, standalone outputs, and short real runs per family."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from crysfuse.config import MonitorConfig
from crysfuse.fusion.base import gate_diagnostics
from crysfuse.training.gate_rules import check_gate, gate_kind, split_diagnostics
from crysfuse.training.monitor import GateMonitor


def _gates(**values) -> dict[str, torch.Tensor]:
    """Diagnostics as a fusion module returns them: per-sample gates plus their summaries."""
    out: dict[str, torch.Tensor] = {}
    for key, array in values.items():
        out.update(gate_diagnostics(key, torch.as_tensor(np.asarray(array, dtype=np.float32))))
    return out


def _healthy(rng: np.random.Generator, n: int = 16) -> dict[str, torch.Tensor]:
    return _gates(quality=rng.uniform(0.6, 0.8, n), fusion=rng.uniform(0.5, 0.7, n),
                  effective=rng.uniform(0.35, 0.55, n), gate=rng.uniform(0.4, 0.7, n),
                  middle1_gate=rng.uniform(0.4, 0.6, n), middle1_gate_saturation=np.zeros(n))


def _run(monitor: GateMonitor, batches: list[dict], epoch_every: int = 0) -> None:
    for step, diagnostics in enumerate(batches):
        monitor.update(diagnostics, step)
        if epoch_every and (step + 1) % epoch_every == 0:
            monitor.end_epoch()


def _rules(monitor: GateMonitor) -> set[tuple[str, str]]:
    return {(w.rule, w.gate) for w in monitor.warnings}


def test_gate_kind_and_split_read_keys_generically():
    assert [gate_kind(k) for k in ("effective", "middle2_gate", "middle2_gate_saturation", "attention_entropy")] \
        == ["effective", "gate", "saturation", "entropy"]
    diagnostics = {**_gates(gate=[0.2, 0.4]), "warmup_factor": torch.tensor(0.5), "gate_strength": torch.tensor(1.)}
    gates, scalars = split_diagnostics(diagnostics)
    assert set(gates) == {"gate"} and gates["gate"].tolist() == pytest.approx([0.2, 0.4])
    assert scalars == {"warmup_factor": 0.5, "gate_strength": 1.0}  # gate_mean/std/min/max are not scalars


def test_healthy_gates_stay_quiet():
    rng = np.random.default_rng(0)
    monitor = GateMonitor(config=MonitorConfig(check_interval=5))
    _run(monitor, [_healthy(rng) for _ in range(40)], epoch_every=10)
    assert monitor.warnings == []
    assert monitor.statistics()["warnings_count"] == 0


@pytest.mark.parametrize("gates, expected", [
    ({"effective": np.full(8, 0.2) + np.linspace(0, 0.05, 8)}, ("suppression", "effective", 0.225, 0.3)),
    ({"quality": np.linspace(0.3, 0.5, 8)}, ("low_quality", "quality", 0.4, 0.5)),
    ({"gate": np.linspace(0.1, 0.3, 8)}, ("gate_range", "gate", 0.2, 0.3)),
    ({"gate": np.linspace(0.91, 0.94, 8)}, ("gate_range", "gate", 0.925, 0.9)),
    ({"middle0_gate": np.linspace(0.05, 0.15, 8)}, ("gate_range", "middle0_gate", 0.1, 0.3)),
    ({"fusion": np.array([0.01, 0.99] * 4)}, ("saturation", "fusion", 1.0, 0.95)),
    ({"fusion": np.full(8, 0.6)}, ("collapse", "fusion", 0.0, 1e-3)),
    ({"middle0_gate_saturation": np.full(8, 0.99)}, ("saturation", "middle0_gate_saturation", 0.99, 0.95)),
    ({"fusion": np.array([0.4, np.nan, 0.6, np.nan] * 2)}, ("non_finite", "fusion", 0.5, 0.0)),
])
def test_each_rule_fires_with_step_value_and_threshold(gates, expected):
    rule, key, value, threshold = expected
    monitor = GateMonitor(config=MonitorConfig(check_interval=3))
    _run(monitor, [_gates(**gates)] * 3)
    assert len(monitor.warnings) == 1, monitor.warnings
    warning = monitor.warnings[0]
    assert (warning.rule, warning.gate, warning.step, warning.epoch) == (rule, key, 2, 0)
    assert warning.value == pytest.approx(value, abs=1e-6) and warning.threshold == pytest.approx(threshold)
    assert key in warning.message


def test_saturation_does_not_fire_on_a_healthy_middle_saturation_fraction():
    fired = check_gate("middle0_gate_saturation", np.zeros(8), MonitorConfig())
    assert fired == []  # all-zero saturation fractions are healthy, not a collapse or a closed gate


def test_jump_between_checks():
    monitor = GateMonitor(config=MonitorConfig(check_interval=2))
    _run(monitor, [_gates(gate=np.linspace(0.4, 0.5, 8))] * 2 + [_gates(gate=np.linspace(0.7, 0.8, 8))] * 2)
    assert _rules(monitor) == {("jump", "gate")}
    assert monitor.warnings[0].value == pytest.approx(0.3) and monitor.warnings[0].step == 3


def test_thresholds_come_from_the_config():
    values = np.linspace(0.35, 0.45, 8)
    assert check_gate("effective", values, MonitorConfig()) == []
    assert [f[0] for f in check_gate("effective", values, MonitorConfig(effective_low=0.5))] == ["suppression"]


def test_a_warning_is_logged_once_per_rule_per_epoch_and_kept(caplog):
    monitor = GateMonitor(config=MonitorConfig(check_interval=1))
    with caplog.at_level(logging.WARNING, logger="crysfuse.training.monitor"):
        _run(monitor, [_gates(effective=np.linspace(0.1, 0.2, 8))] * 6, epoch_every=3)
    assert [(w.epoch, w.step, w.repeats) for w in monitor.warnings] == [(0, 0, 2), (1, 3, 2)]
    assert len([r for r in caplog.records if "suppression" in r.getMessage()]) == 2
    assert monitor.statistics()["warnings_by_rule"] == {"suppression": 6}


def test_standalone_monitor_writes_events_statistics_and_plots(tmp_path, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rng = np.random.default_rng(1)
    monitor = GateMonitor(tmp_path / "tb", out_dir=tmp_path, config=MonitorConfig(log_interval=2, check_interval=1, jump=1.0))
    batches = [{**_healthy(rng), "warmup_factor": torch.tensor(min(1.0, s / 4))} for s in range(8)]
    batches[5] = {**batches[5], **_gates(effective=np.full(16, 0.1) + rng.uniform(0, 0.01, 16))}
    with caplog.at_level(logging.INFO, logger="crysfuse.training.monitor"):
        _run(monitor, batches, epoch_every=4)
        statistics = monitor.finish()
    saved = json.loads((tmp_path / "gate_statistics.json").read_text())
    assert saved["total_steps"] == 8 and saved["epochs"] == 2
    assert set(saved["gates"]) == {"quality", "fusion", "effective", "gate", "middle1_gate", "middle1_gate_saturation"}
    effective = saved["gates"]["effective"]
    assert {"mean", "std", "min", "max", "count"} <= set(effective["training"]) <= set(effective["last_epoch"]) | {"count"}
    assert effective["training"]["count"] == 8 * 16 and effective["last_epoch"]["count"] == 4 * 16
    assert effective["training"]["min"] == pytest.approx(0.1, abs=0.01)
    assert [(w["rule"], w["gate"], w["epoch"], w["step"]) for w in saved["warnings"]] == [
        ("suppression", "effective", 1, 5)]
    assert saved["scalars"]["warmup_factor"] == {"last": 1.0, "min": 0.0, "max": 1.0}
    assert statistics == saved
    assert (tmp_path / "gate_plots.png").stat().st_size > 5000
    assert any("gate monitor: 8 steps" in r.getMessage() for r in caplog.records)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {f"gate/effective_{s}" for s in ("mean", "std", "min", "max")} <= scalars
    assert "gate/warmup_factor" in scalars and "gate/effective_mean_mean" not in scalars
    assert {"gate/effective", "gate/gate"} <= set(events.Tags()["histograms"])
    assert [e.step for e in events.Scalars("gate/effective_mean")] == [1, 3, 5, 7]
    # the plot's bands: quantiles of each log point's samples, ordered and inside the samples' range
    history = monitor.history["effective"]
    assert all(len(history[q]) == 4 for q in ("q05", "q25", "q50", "q75", "q95"))
    for i in range(4):
        band = [history[k][i] for k in ("min", "q05", "q25", "q50", "q75", "q95", "max")]
        assert band == sorted(band) and 0.0 <= band[0] and band[-1] <= 1.0


def test_the_plot_of_a_state_saved_before_quantiles_were_kept(tmp_path):
    rng = np.random.default_rng(3)
    monitor = GateMonitor(out_dir=tmp_path, config=MonitorConfig(log_interval=1))
    _run(monitor, [_healthy(rng) for _ in range(3)], epoch_every=3)
    for history in monitor.history.values():  # as resumed from a checkpoint of an older version
        for q in ("q05", "q25", "q50", "q75", "q95"):
            del history[q]
    monitor.finish()
    assert (tmp_path / "gate_plots.png").stat().st_size > 5000


def test_state_survives_a_weights_only_checkpoint(tmp_path):
    rng = np.random.default_rng(2)
    monitor = GateMonitor(config=MonitorConfig(check_interval=1))
    _run(monitor, [_healthy(rng) for _ in range(3)] + [_gates(effective=np.full(4, 0.1) + [0, .01, .02, .03])],
         epoch_every=2)
    torch.save(monitor.state_dict(), tmp_path / "state.pt")
    restored = GateMonitor(config=MonitorConfig(check_interval=1))
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert restored.statistics() == monitor.statistics()


def test_no_gates_still_writes_a_report(tmp_path):
    monitor = GateMonitor(out_dir=tmp_path)
    monitor.update({}, 0)
    statistics = monitor.finish()
    assert statistics["gates"] == {} and (tmp_path / "gate_plots.png").is_file()


FAMILIES = {
    "gated": ((), {"quality", "fusion", "effective"}, set()),
    "simplified": ((), {"gate"}, set()),
    "warmup": (("fusion.warmup_steps=4",), {"gate"}, {"warmup_factor", "gate_strength"}),
}


@pytest.mark.parametrize("fusion", sorted(FAMILIES))
def test_training_run_has_gate_events_statistics_and_plots(train_tiny, fusion):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    extra, gates, scalars = FAMILIES[fusion]
    run_dir = train_tiny(fusion, *extra)
    saved = json.loads((run_dir / "gate_statistics.json").read_text())
    assert set(saved["gates"]) == gates and set(saved["scalars"]) == scalars
    assert saved["epochs"] == 2 and saved["total_steps"] == 8  # 32 training crystals, batches of 8
    for stats in saved["gates"].values():
        assert 0.0 <= stats["training"]["min"] <= stats["training"]["mean"] <= stats["training"]["max"] <= 1.0
        assert stats["training"]["count"] == 64 and stats["last_epoch"]["count"] == 32
    assert isinstance(saved["warnings"], list) and saved["thresholds"]["effective_low"] == 0.3
    assert (run_dir / "gate_plots.png").stat().st_size > 5000
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {f"gate/{g}_{s}" for g in gates for s in ("mean", "std", "min", "max")} <= tags
    assert {f"gate/{s}" for s in scalars} <= tags
    assert "train_loss" in tags  # the same event stream as the trainer's own metrics
    assert {f"gate/{g}" for g in gates} <= set(events.Tags()["histograms"])
    assert [h.step for h in events.Histograms(f"gate/{min(gates)}")] == [3, 7]  # one per epoch
    assert [e.step for e in events.Scalars(f"gate/{min(gates)}_mean")] == [3, 7]
