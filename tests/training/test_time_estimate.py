"""The epoch-time estimate logged after the first training steps, and the presets of ``crysfuse train``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from crysfuse.config import PRESETS, Config, ConfigError
from crysfuse.rundir import read_status, write_status
from crysfuse.training.callbacks import EpochTimeEstimate, format_duration

REPO = Path(__file__).resolve().parents[2]


def _drive(callback: EpochTimeEstimate, trainer: SimpleNamespace, step_times: list[float], monkeypatch) -> None:
    clock = iter(step_times)
    monkeypatch.setattr("crysfuse.training.callbacks.time.perf_counter", lambda: next(clock))
    callback.on_train_epoch_start(trainer, None)
    for index in range(len(step_times) - 1):
        callback.on_train_batch_end(trainer, None, None, None, index)
    callback.on_train_epoch_end(trainer, None)


def test_estimate_after_the_first_steps_skips_the_warm_up_step(tmp_path, monkeypatch, caplog):
    write_status(tmp_path, "running", pid=1)
    trainer = SimpleNamespace(num_training_batches=100, max_epochs=10, current_epoch=0, is_global_zero=True)
    # epoch start at 0, a slow warm-up step (ends at 5 s), then steps of 0.5 s each, 40 steps in all
    times = [0.0, 5.0] + [5.0 + 0.5 * k for k in range(1, 40)]
    callback = EpochTimeEstimate(tmp_path, steps=20)
    with caplog.at_level(logging.INFO, logger="crysfuse.training.callbacks"):
        _drive(callback, trainer, times, monkeypatch)
    assert callback.estimate["timed_steps"] == 20 and callback.estimate["seconds_per_step"] == pytest.approx(0.5)
    assert callback.estimate["epoch_seconds"] == pytest.approx(50.0)
    assert callback.estimate["remaining_seconds"] == pytest.approx(500.0)
    status = read_status(tmp_path)
    assert status["state"] == "running" and status["pid"] == 1 and status["estimate"] == callback.estimate
    assert "about 50 s per epoch (100 steps, training only); at most 8.3 min for the 10 epochs left" in caplog.text


def test_a_short_epoch_is_estimated_at_its_end(tmp_path, monkeypatch):
    trainer = SimpleNamespace(num_training_batches=3, max_epochs=4, current_epoch=1, is_global_zero=True)
    callback = EpochTimeEstimate(tmp_path, steps=20)
    _drive(callback, trainer, [0.0, 3.0, 4.0, 5.0], monkeypatch)
    assert callback.estimate["timed_steps"] == 2 and callback.estimate["epoch_seconds"] == pytest.approx(3.0)
    assert callback.estimate["remaining_seconds"] == pytest.approx(9.0)  # epochs 1, 2, 3 are left


def test_durations_read_well():
    assert [format_duration(s) for s in (42, 600, 7200)] == ["42 s", "10.0 min", "2.0 h"]


def test_a_trained_run_records_its_estimate(train_tiny):
    summary = json.loads((train_tiny("graph_only") / "summary.json").read_text())
    estimate = summary["time_estimate"]
    assert estimate["steps_per_epoch"] >= 1 and estimate["epoch_seconds"] > 0 and estimate["max_epochs"] == 2


def test_cpu_small_preset_is_configs_cpu_small_yaml():
    sizes = yaml.safe_load((REPO / "configs" / "cpu_small.yaml").read_text())
    config = Config().with_preset("cpu-small")
    for section in ("model", "fusion", "train"):
        for key, value in sizes[section].items():
            if key != "progress_bar":
                assert getattr(getattr(config, section), key) == value, f"{section}.{key}"


def test_a_preset_replaces_the_size_of_a_config_and_alignn_is_the_default():
    small = Config().with_preset("cpu-small")
    assert small.with_preset("alignn").model == Config().model
    assert small.with_preset("alignn").train.epochs == Config().train.epochs
    with pytest.raises(ConfigError, match="unknown preset 'huge'; known: alignn, cpu-small"):
        Config().with_preset("huge")


def test_train_help_lists_the_presets_and_the_flag_applies_one(tmp_path, capsys):
    from crysfuse.cli import main
    from crysfuse.cli.train import train_config

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert all(f"  {name}" in out and PRESETS[name].description[:30] in " ".join(out.split()) for name in PRESETS)
    args = SimpleNamespace(config=None, preset="cpu-small", set=["model.dim_hidden=96"], epochs=3,
                           **{flag: None for flag in ("data", "target", "limit", "split_file", "text_file",
                                                      "cache_dir", "fusion", "batch_size", "seed", "run_dir")})
    config = train_config(args)
    assert (config.model.num_alignn_layers, config.model.dim_hidden, config.train.epochs) == (2, 96, 3)
    assert "| `cpu-small` |" in (REPO / "docs" / "configuration.md").read_text()
