"""A short real training on a slice of mp36k: every run-directory file, predict reproduces the test CSV."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from crysfuse.cli import main
from crysfuse.data.dataset import make_loader
from crysfuse.rundir import load_run

RUN_FILES = ["model.safetensors", "config.json", "meta.json", "splits.json", "metrics.jsonl",
             "predictions_val.csv", "predictions_test.csv", "summary.json", "rejections.csv"]
SUMMARY_KEYS = {"val_mae", "test_mae", "n_params", "n_params_fusion", "train_seconds", "epochs", "best_epoch",
                "fusion", "target", "data", "seed"}


def _read_csv(path):
    with open(path, newline="") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def trained_runs(train_tiny):
    return {fusion: train_tiny(fusion) for fusion in ("simplified", "graph_only", "concat")}


@pytest.mark.parametrize("fusion", ["simplified", "graph_only", "concat"])
def test_run_directory_is_complete(trained_runs, fusion):
    run_dir = trained_runs[fusion]
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["fusion"] == fusion and summary["target"] == "gap pbe"
    assert (summary["n_params_fusion"] == 0) == (fusion == "graph_only")
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [0, 1]
    assert all({"train_loss", "val_mae", "lr", "seconds"} <= set(m) for m in metrics)
    # Model selection is on validation: the summary's val MAE is the best epoch's.
    assert summary["val_mae"] == pytest.approx(min(m["val_mae"] for m in metrics), rel=1e-4)
    splits = json.loads((run_dir / "splits.json").read_text())
    assert sum(len(v) for v in splits.values()) == 40
    test_rows = _read_csv(run_dir / "predictions_test.csv")
    assert set(test_rows) == set(splits["test"])
    assert list((run_dir / "tensorboard").iterdir())


def test_predict_reproduces_the_test_csv(trained_runs, mp36k_slice, tmp_path):
    run_dir = trained_runs["simplified"]
    out = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(run_dir), "--data", str(mp36k_slice), "--out", str(out)]) == 0
    predicted = _read_csv(out)
    expected = _read_csv(run_dir / "predictions_test.csv")
    assert len(predicted) == 40
    for record_id, row in expected.items():
        assert float(predicted[record_id]["prediction"]) == pytest.approx(float(row["prediction"]), abs=1e-6)
        assert float(predicted[record_id]["gate"]) == pytest.approx(float(row["gate"]), abs=1e-6)


def test_checkpoint_round_trip_gives_identical_predictions(trained_runs, tmp_path):
    from crysfuse.data.pipeline import prepare
    from crysfuse.data.sources import load_records
    from crysfuse.rundir import save_weights

    loaded = load_run(trained_runs["simplified"])
    config = loaded.config
    records = load_records(config.data.path, config.data.target).records[:8]
    items = list(prepare(records, config, uses_text=True).items.values())
    batch = next(iter(make_loader(items, batch_size=8, shuffle=False)))
    first = loaded.model(batch).prediction
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    for name in ("config.json", "meta.json"):
        (copy_dir / name).write_text((trained_runs["simplified"] / name).read_text())
    save_weights(copy_dir / "model.safetensors", loaded.model)
    second = load_run(copy_dir).model(batch).prediction
    assert torch.equal(first, second)
