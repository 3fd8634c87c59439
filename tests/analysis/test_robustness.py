"""`crysfuse robustness` on a short real run."""

from __future__ import annotations

import csv
import json

import pytest

from crysfuse.cli import main


def test_robustness_command_writes_table_and_plots(train_tiny, tmp_path):
    run_dir = train_tiny("simplified")
    out = tmp_path / "robust"
    assert main(["robustness", "--checkpoint", str(run_dir), "--strategies", "random_word,sentence",
                 "--modes", "mask,delete", "--ratios", "0,0.5,1", "--split", "val", "--out", str(out)]) == 0
    with open(out / "robustness.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 2 * 3
    assert {"strategy", "mode", "ratio", "mae", "rmse", "r2", "gate_mean"} <= set(rows[0])
    by_key = {(r["strategy"], r["mode"], float(r["ratio"])): r for r in rows}
    clean = float(by_key[("random_word", "mask", 0.0)]["mae"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert clean == pytest.approx(summary["val_mae"], rel=1e-5)
    deleted = by_key[("random_word", "delete", 1.0)]
    assert deleted["mae"] != by_key[("random_word", "delete", 0.0)]["mae"]
    assert json.loads((out / "robustness.json").read_text())["rows"][0]["strategy"] == "random_word"
    for name in ("robustness_mae.png", "robustness_gate_mean.png"):
        assert (out / name).stat().st_size > 1000
