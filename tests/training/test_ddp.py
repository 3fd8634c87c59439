"""Two CPU processes through Lightning's DDP (gloo): one epoch, a sane, complete run directory."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from tests.conftest import SHARED_DATA, TINY_MODEL


def test_two_process_ddp_training(tmp_path, mp36k_slice, cache_dir):
    run_dir = tmp_path / "ddp"
    command = [sys.executable, "-m", "crysfuse", "train", "--data", str(mp36k_slice), "--target", "gap pbe",
               "--fusion", "simplified", "--epochs", "1", "--run-dir", str(run_dir), "--cache-dir", str(cache_dir),
               "--text-file", str(SHARED_DATA / "mp36k.desc_jarvis.jsonl.gz")]
    for setting in TINY_MODEL + ["train.strategy=ddp", "train.devices=2", "train.accelerator=cpu"]:
        command += ["--set", setting]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert math.isfinite(summary["val_mae"]) and math.isfinite(summary["test_mae"])
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1  # written once, by rank 0 only
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
