"""Uncertainty from ensembles: combining members, the spread-vs-error ranking, calibration, mixed targets."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from crysfuse.analysis.ensemble import calibration_curve, ensemble_uncertainty
from crysfuse.config import Config
from crysfuse.predict import Predictions, combine_members


def test_members_are_combined_on_the_ids_they_share():
    ids, mean, spread = combine_members([(["a", "b", "c"], np.array([1.0, 2.0, 3.0])),
                                         (["c", "a"], np.array([5.0, 3.0]))])
    assert ids == ["a", "c"] and mean.tolist() == [2.0, 4.0] and spread.tolist() == [1.0, 1.0]


def test_a_spread_that_follows_the_error_ranks_it():
    rng = np.random.default_rng(0)
    target = rng.normal(size=200)
    scale = np.linspace(0.01, 1.0, 200)
    members = [Predictions(ids=[str(i) for i in range(200)], target=target,
                           prediction=target + scale * sign + scale * 0.5) for sign in (-1.0, 1.0)]
    result = ensemble_uncertainty(members)
    assert result["n_members"] == 2 and result["n_records"] == 200
    assert result["spread_error_spearman"] == pytest.approx(1.0)
    assert result["ensemble_mae"] == pytest.approx(np.mean(scale * 0.5))
    assert ensemble_uncertainty(members[:1]) is None
    curve = result["calibration"]
    assert len(curve) == 5 and sum(r["n"] for r in curve) == 200
    assert [r["spread"] for r in curve] == sorted(r["spread"] for r in curve)


def test_calibration_of_a_calibrated_spread_lies_on_the_diagonal():
    rng = np.random.default_rng(1)
    spread = np.repeat([0.1, 0.5, 1.0, 2.0], 5000)
    curve = calibration_curve(spread, rng.normal(size=spread.size) * spread, bins=4)
    assert all(r["rmse"] == pytest.approx(r["spread"], rel=0.05) for r in curve)


def test_an_ensemble_of_mixed_targets_is_refused():
    from crysfuse.api import check_same_target
    from crysfuse.rundir import CheckpointError

    configs = [Config().replace({"data.target": t}) for t in ("gap pbe", "gap pbe", "e_form")]
    check_same_target(configs[:2], ["a", "b"])
    with pytest.raises(CheckpointError, match="one target, got 2 targets: .*c → 'e_form'"):
        check_same_target(configs, ["a", "b", "c"])


def test_predict_with_several_runs_writes_mean_and_spread(train_tiny, mp36k_slice, tmp_path, capsys):
    import csv

    import crysfuse
    from crysfuse.cli import main

    runs = [train_tiny("graph_only"), train_tiny("graph_only", "train.seed=1")]
    out = tmp_path / "ensemble.csv"
    assert main(["predict", "--checkpoint", *map(str, runs), "--data", str(mp36k_slice), "--out", str(out)]) == 0
    assert "ensemble of 2 runs" in capsys.readouterr().out
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 40 and list(rows[0]) == ["id", "target", "prediction", "spread", "members"]
    singles = []
    for run in runs:
        assert main(["predict", "--checkpoint", str(run), "--data", str(mp36k_slice),
                     "--out", str(tmp_path / "one.csv")]) == 0
        with open(tmp_path / "one.csv", newline="") as handle:
            singles.append({r["id"]: float(r["prediction"]) for r in csv.DictReader(handle)})
    for row in rows:
        values = [s[row["id"]] for s in singles]
        assert float(row["prediction"]) == pytest.approx(np.mean(values), abs=1e-5)
        assert float(row["spread"]) == pytest.approx(np.std(values), abs=1e-5)
    assert any(float(r["spread"]) > 0 for r in rows)
    from crysfuse.data.sources import load_records

    ensemble = crysfuse.load(runs)
    records = load_records(mp36k_slice, "gap pbe", limit=3).records
    result = ensemble.predict([r.structure for r in records], ids=[r.id for r in records])
    assert result.spread is not None and result.ids == [r.id for r in records]
    assert "spread" in result.to_dataframe().columns
    assert result.prediction.tolist() == pytest.approx([float(next(x["prediction"] for x in rows
                                                                  if x["id"] == r.id)) for r in records], abs=1e-4)


def test_predict_refuses_runs_of_different_targets(train_tiny, mp36k_slice, tmp_path, caplog, capfd):
    from crysfuse.cli import main

    other = tmp_path / "other"
    shutil.copytree(train_tiny("graph_only"), other)
    config = json.loads((other / "config.json").read_text())
    config["data"]["target"] = "e_form"
    (other / "config.json").write_text(json.dumps(config))
    code = main(["predict", "--checkpoint", str(train_tiny("graph_only")), str(other), "--data", str(mp36k_slice),
                 "--out", str(tmp_path / "x.csv")])
    assert code == 2 and not (tmp_path / "x.csv").exists()
    assert "an ensemble needs runs of one target, got 2 targets" in caplog.text + _stderr_of(capfd)


def _stderr_of(capfd) -> str:
    captured = capfd.readouterr()
    return captured.out + captured.err
