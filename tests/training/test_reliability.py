"""Crash safety: kill -9 and resume, one writer, safe loading, determinism."""

from __future__ import annotations

import csv
import json
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crysfuse.cli import main
from crysfuse.rundir import CheckpointError, RunLock, load_run
from tests.conftest import SHARED_DATA, TINY_MODEL


def _train_args(data: Path, run_dir: Path, cache_dir: Path, *extra: str) -> list[str]:
    args = ["train", "--data", str(data), "--target", "gap pbe", "--fusion", "simplified", "--epochs", "6",
            "--run-dir", str(run_dir), "--cache-dir", str(cache_dir),
            "--text-file", str(SHARED_DATA / "mp36k.desc_jarvis.jsonl.gz")]
    for setting in [*TINY_MODEL, "train.batch_size=4", "fusion.dropout=0.2", *extra]:
        args += ["--set", setting]
    return args


def _metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")  # wall-clock time is the one field that may differ
    return rows


def _predictions(run_dir: Path, split: str = "test") -> dict[str, float]:
    with open(run_dir / f"predictions_{split}.csv", newline="") as handle:
        return {row["id"]: float(row["prediction"]) for row in csv.DictReader(handle)}


def _assert_same_results(a: Path, b: Path) -> None:
    rows_a, rows_b = _metrics(a), _metrics(b)
    assert [r["epoch"] for r in rows_a] == [r["epoch"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):
        for key in ra:
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-7), key
    pa, pb = _predictions(a), _predictions(b)
    assert pa.keys() == pb.keys()
    assert all(pa[k] == pytest.approx(pb[k], rel=1e-5, abs=1e-6) for k in pa)


def _cli_process(args: list[str]) -> subprocess.Popen:
    """``crysfuse`` in a child process with this process's environment (same threads on both sides)."""
    command = [sys.executable, "-c", "import sys; from crysfuse.cli import main; sys.exit(main(sys.argv[1:]))", *args]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_after_first_epoch(process: subprocess.Popen, run_dir: Path, *, timeout: float) -> Path:
    """SIGKILL a training process just after its first finished epoch; returns the progress marker's path."""
    marker = run_dir / "resume" / "last.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if marker.exists() and json.loads(marker.read_text())["epoch"] >= 1:
            break
        time.sleep(0.01)
    time.sleep(0.05)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "training finished before it could be killed"
    return marker


@pytest.mark.parametrize("extra", [(), ("train.ema_decay=0.9",)], ids=["plain", "ema"])
def test_kill_9_mid_training_then_resume_matches_an_uninterrupted_run(tmp_path, mp36k_slice, cache_dir, extra):
    """With ``train.ema_decay`` the weight average travels with the resume state, so the resumed run's
    metrics (validated on the average) and predictions match too."""
    reference = tmp_path / "reference"
    assert _cli_process(_train_args(mp36k_slice, reference, cache_dir, *extra)).wait(timeout=600) == 0

    run_dir = tmp_path / "killed"
    process = _cli_process(_train_args(mp36k_slice, run_dir, cache_dir, *extra))
    marker = _kill_after_first_epoch(process, run_dir, timeout=240)
    assert json.loads((run_dir / "status.json").read_text())["state"] == "running"
    assert not (run_dir / "summary.json").exists()
    marker.write_text('{"epoch": 0}')  # a stale progress marker must not matter: the checkpoint says

    assert _cli_process(_train_args(mp36k_slice, run_dir, cache_dir, *extra) + ["--resume"]).wait(timeout=600) == 0
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    _assert_same_results(reference, run_dir)


def test_same_seed_twice_gives_identical_metrics_and_predictions(tmp_path, mp36k_slice, cache_dir):
    first, second = tmp_path / "a", tmp_path / "b"
    for run_dir in (first, second):
        assert main(_train_args(mp36k_slice, run_dir, cache_dir, "train.text_corruption.probability=0.5")) == 0
    assert _metrics(first) == _metrics(second)
    assert _predictions(first) == _predictions(second)


def test_a_second_writer_is_refused(tmp_path, mp36k_slice, cache_dir, caplog):
    run_dir = tmp_path / "locked"
    with RunLock(run_dir):
        assert main(_train_args(mp36k_slice, run_dir, cache_dir)) == 2
    assert "in use" in caplog.text
    assert not (run_dir / "metrics.jsonl").exists()


def test_finished_run_is_skipped_and_a_different_config_refused(train_tiny, caplog):
    caplog.set_level("INFO")
    run_dir = train_tiny("graph_only")
    summary_before = (run_dir / "summary.json").read_text()
    again = ["train", "--config", str(run_dir / "config.json")]
    assert main(again) == 0
    assert (run_dir / "summary.json").read_text() == summary_before
    assert "already finished" in caplog.text
    assert main(again + ["--set", "train.learning_rate=0.5"]) == 2
    assert "different config" in caplog.text


class _Payload:
    """Unpickling this object would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_payloads_are_refused_without_running(train_tiny, tmp_path, caplog):
    source = train_tiny("graph_only")
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "evil"
    run_dir.mkdir()
    for name in ("config.json", "meta.json"):
        (run_dir / name).write_text((source / name).read_text())
    (run_dir / "model.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="safetensors"):
        load_run(run_dir)
    assert not marker.exists()

    # A planted resume state: torch.save of the payload where the training state should be.
    import torch

    config = json.loads((source / "config.json").read_text())
    resume_dir = tmp_path / "evil_resume"
    config["experiment"]["run_dir"] = str(resume_dir)
    (resume_dir / "resume").mkdir(parents=True)
    (resume_dir / "config.json").write_text(json.dumps(config))
    torch.save({"state": _Payload(marker)}, resume_dir / "resume" / "last.ckpt")
    assert main(["train", "--config", str(resume_dir / "config.json"), "--resume"]) == 2
    assert "refusing resume state" in caplog.text
    assert not marker.exists()
