"""The run directory's records, read and written through crysfuse.rundir only."""

from __future__ import annotations

import json

import numpy as np

from crysfuse import rundir
from crysfuse.data.records import Rejection
from crysfuse.predict import Predictions


def test_metrics_reading_stops_at_a_line_cut_by_a_crash(tmp_path):
    path = rundir.metrics_path(tmp_path)
    path.write_text('{"epoch": 0, "val_mae": 1.0}\n{"epoch": 1, "val_mae": 0.5}\n{"epoch": 2, "val_')
    assert [row["epoch"] for row in rundir.read_metrics(tmp_path)] == [0, 1]
    rundir.truncate_metrics(tmp_path, last_epoch=0)
    assert path.read_text() == '{"epoch": 0, "val_mae": 1.0}\n'
    rundir.clear_metrics(tmp_path)
    assert rundir.read_metrics(tmp_path) == [] and not path.exists()


def test_finished_needs_the_status_and_the_summary(tmp_path):
    assert not rundir.is_finished(tmp_path)
    rundir.write_status(tmp_path, "finished")
    assert not rundir.is_finished(tmp_path)  # no summary.json yet
    rundir.write_summary(tmp_path, {"val_mae": 0.1, "seed": 0})
    assert rundir.is_finished(tmp_path) and rundir.read_summary(tmp_path)["val_mae"] == 0.1
    rundir.write_status(tmp_path, "running", pid=1)
    assert not rundir.is_finished(tmp_path) and rundir.read_status(tmp_path)["pid"] == 1


def test_splits_predictions_and_rejections_round_trip(tmp_path):
    rundir.write_splits(tmp_path, {"train": ["a"], "val": ["b"], "test": ["c", "d"]})
    assert rundir.read_splits(tmp_path)["test"] == ["c", "d"]
    predictions = Predictions(ids=["c", "d"], target=np.array([1.0, 2.0]), prediction=np.array([1.5, 1.0]),
                              gates={"gate": np.array([0.2, 0.8])})
    rundir.write_predictions_csv(rundir.predictions_path(tmp_path, "test"), predictions)
    assert rundir.read_test_errors(tmp_path) == {"c": 0.5, "d": 1.0}
    rundir.write_rejections(rundir.rejections_path(tmp_path), [Rejection("x", "graph", "too, many atoms")])
    assert rundir.rejections_path(tmp_path).read_text().splitlines() == ["id,stage,reason", 'x,graph,"too, many atoms"']
    assert rundir.summarize_rejections([Rejection("x", "graph", "r"), Rejection("y", "load", "r"),
                                        Rejection("z", "graph", "r")]) == "3 records rejected (graph: 2, load: 1)"


def test_robustness_and_gate_statistics_are_optional(tmp_path):
    assert rundir.read_robustness_rows(tmp_path) is None and rundir.read_gate_statistics(tmp_path) is None
    results = rundir.robustness_results_dir(tmp_path)
    results.mkdir()
    (results / "robustness.json").write_text(json.dumps({"rows": [{"mode": "delete", "ratio": 1.0, "mae": 2.0}]}))
    assert rundir.has_robustness(tmp_path) and rundir.read_robustness_rows(tmp_path)[0]["mae"] == 2.0


def test_committed_gzipped_predictions_are_read_back_the_same(tmp_path):
    """A study commits ``predictions_test.csv.gz`` (scripts/compress_predictions.py), not the plain file."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "compress_predictions", Path(__file__).parents[2] / "scripts" / "compress_predictions.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    predictions = Predictions(ids=["c", "d"], target=np.array([1.0, 2.0]), prediction=np.array([1.5, 1 / 3]),
                              gates={"gate": np.array([0.2, 0.8])})
    plain = rundir.predictions_path(tmp_path, "test")
    rundir.write_predictions_csv(plain, predictions)
    rundir.write_summary(tmp_path, {"val_mae": 0.1, "seed": 0})
    script.main([str(tmp_path)])
    packed = plain.with_name(plain.name + ".gz")
    first = packed.read_bytes()
    assert not script.compress(plain) and packed.read_bytes() == first  # unchanged content: left alone
    plain.unlink()
    back = rundir.read_predictions(tmp_path, "test")
    assert back.ids == ["c", "d"] and np.array_equal(back.prediction, predictions.prediction)
    assert np.array_equal(back.gates["gate"], predictions.gates["gate"])
    assert rundir.read_test_errors(tmp_path) == {"c": 0.5, "d": 2 - 1 / 3}
    packed.unlink()
    assert rundir.read_predictions(tmp_path, "test") is None
