import csv
import logging

import numpy as np
import pytest

from crysfuse import predict
from crysfuse.models.crysfuse import CrysFuseModel
from crysfuse.predict import predict_items, regression_metrics
from crysfuse.rundir import write_predictions_csv
from tests.helpers import crystal_batch, tiny_config


def test_negative_predictions_survive_to_the_csv(tmp_path):
    """Formation energies are negative: nothing between the model and the CSV clips at 0."""
    model = CrysFuseModel(tiny_config("graph_only"), dim_text=0)
    model.set_target_scaling(-5.0, 0.01)
    batch = crystal_batch([0, 0, 0])
    items = batch.to_data_list()
    predictions = predict_items(model, ["a", "b", "c"], items, batch_size=2)
    assert (predictions.prediction < -4).all()
    write_predictions_csv(tmp_path / "p.csv", predictions)
    with open(tmp_path / "p.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["prediction"]) for r in rows] == pytest.approx(predictions.prediction.tolist(), abs=0)


def test_regression_metrics():
    metrics = regression_metrics(np.array([0.0, 1.0, 2.0, np.nan]), np.array([0.5, 1.0, 1.0, 7.0]))
    assert metrics["mae"] == pytest.approx(0.5)
    assert metrics["max_error"] == pytest.approx(1.0)
    assert metrics["rmse"] == pytest.approx(np.sqrt((0.25 + 1.0) / 3))
    assert metrics["r2"] == pytest.approx(1 - (1.25 / 3) / (2 / 3))


def test_bf16_predictions_follow_the_models_precision():
    """``predict_items`` runs at the model's ``train.precision`` and says so; bf16 stays close to fp32."""
    model = CrysFuseModel(tiny_config("graph_only"), dim_text=0)
    items = crystal_batch([0, 1, 0, 1]).to_data_list()
    ids = ["a", "b", "c", "d"]
    full = predict_items(model, ids, items, batch_size=2)
    assert full.precision == "32-true"
    model.config.train.precision = "bf16-mixed"
    half = predict_items(model, ids, items, batch_size=2)
    assert half.precision == "bf16-mixed"
    assert not np.array_equal(half.prediction, full.prediction)  # autocast really ran
    assert np.allclose(half.prediction, full.prediction, rtol=0.05, atol=0.05)
    forced = predict_items(model, ids, items, batch_size=2, precision="32-true")
    assert forced.precision == "32-true" and np.array_equal(forced.prediction, full.prediction)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_that_emulates_it_is_reported(monkeypatch, caplog, native):
    """On a CPU without AVX-512 BF16/AMX, bf16-mixed is emulated and ~5x slower than float32: say so once."""
    monkeypatch.setattr(predict, "cpu_has_native_bf16", lambda: native)
    predict.warn_if_bf16_is_emulated.cache_clear()
    model = CrysFuseModel(tiny_config("graph_only"), dim_text=0)
    items = crystal_batch([0, 1]).to_data_list()
    with caplog.at_level(logging.WARNING, logger="crysfuse.predict"):
        predict_items(model, ["a", "b"], items, precision="bf16-mixed")
        predict_items(model, ["a", "b"], items, precision="bf16-mixed")
        predict_items(model, ["a", "b"], items, precision="32-true")
    warnings = [r for r in caplog.records if "without native bfloat16" in r.getMessage()]
    assert len(warnings) == (0 if native else 1)
    assert predict.warn_if_bf16_is_emulated("32-true", "cpu") is False
    assert predict.warn_if_bf16_is_emulated("bf16-mixed", "cuda") is False
    predict.warn_if_bf16_is_emulated.cache_clear()
