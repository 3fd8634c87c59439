"""Fine-tuned text encoders and the text-only variant, end to end on the 40-record mp36k slice: the run directory
holds only the trained encoder tensors, and ``crysfuse predict`` / ``crysfuse.load`` reproduce the run's own
test predictions."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

import crysfuse
from crysfuse.cli import main
from crysfuse.data.sources import load_records
from crysfuse.data.text_files import read_text_file
from crysfuse.rundir import TEXT_ENCODER_FILE, WEIGHTS_FILE, load_run
from crysfuse.text.finetune import TrainableTextEncoder
from tests.conftest import SHARED_DATA

SHORT = ["text.max_length=48"]  # keeps the encoder's steps small; the texts are cut (and counted)


def _read_csv(path):
    with open(path, newline="") as handle:
        return {row["id"]: float(row["prediction"]) for row in csv.DictReader(handle)}


def _keys(path) -> list[str]:
    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())


@pytest.fixture(scope="module")
def lora_run(train_tiny):
    return train_tiny("simplified", *SHORT, "text.finetune=lora", "text.lora_rank=4")


@pytest.fixture(scope="module")
def last_k_run(train_tiny):
    return train_tiny("concat", *SHORT, "text.finetune=last_k", "text.finetune_layers=1")


def test_lora_run_saves_only_the_adapters(lora_run):
    keys = _keys(lora_run / TEXT_ENCODER_FILE)
    assert keys and all("lora_" in k for k in keys)
    assert not any(k.startswith("text_encoder.") for k in _keys(lora_run / WEIGHTS_FILE))
    summary = json.loads((lora_run / "summary.json").read_text())
    assert summary["text_finetune"] == "lora" and summary["text_truncated"] > 0
    metrics = [json.loads(line) for line in (lora_run / "metrics.jsonl").read_text().splitlines()]
    assert all(0 < m["lr_text"] < m["lr"] for m in metrics)  # its own (smaller) learning rate


def test_last_k_run_changes_only_the_last_layer(last_k_run):
    model = load_run(last_k_run).model
    base = TrainableTextEncoder(dataclasses.replace(model.config.text, finetune="all"))  # every weight, untrained
    base_state, tuned_state = base.state_dict(), model.text_encoder.state_dict()
    assert set(base_state) == set(tuned_state)
    changed = {k for k in base_state if not torch.equal(base_state[k], tuned_state[k])}
    assert changed and all(k.startswith("model.encoder.layer.5.") for k in changed)
    assert all(k.startswith("model.encoder.layer.5.") for k in _keys(last_k_run / TEXT_ENCODER_FILE))


@pytest.mark.parametrize("run", ["lora_run", "last_k_run"])
def test_predict_reproduces_the_test_predictions(run, request, mp36k_slice, tmp_path):
    run_dir = request.getfixturevalue(run)
    out = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(run_dir), "--data", str(mp36k_slice), "--out", str(out)]) == 0
    predicted, expected = _read_csv(out), _read_csv(run_dir / "predictions_test.csv")
    for record_id, value in expected.items():
        assert predicted[record_id] == pytest.approx(value, abs=1e-5)


def test_load_predicts_the_test_crystals_as_the_run_did(lora_run, mp36k_slice):
    expected = _read_csv(lora_run / "predictions_test.csv")
    records = {r.id: r for r in load_records(str(mp36k_slice), "gap pbe").records}
    texts = read_text_file(str(SHARED_DATA / "mp36k.desc_jarvis.jsonl.gz"))
    ids = list(expected)
    result = crysfuse.load(lora_run).predict([records[i].structure for i in ids], [texts[i] for i in ids], ids=ids)
    assert result.ids == ids
    for record_id, value in zip(result.ids, result.prediction):
        assert value == pytest.approx(expected[record_id], abs=1e-5)


def test_a_changed_base_encoder_is_refused(lora_run, tmp_path):
    from crysfuse.rundir import CheckpointError

    copy = tmp_path / "copy"
    copy.mkdir()
    for path in lora_run.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "encoder_id": "minilm@0000000000000000"}))
    with pytest.raises(CheckpointError, match="only fit the original"):
        load_run(copy)
    (copy / "meta.json").write_text(json.dumps(meta))
    (copy / TEXT_ENCODER_FILE).unlink()
    with pytest.raises(CheckpointError, match=TEXT_ENCODER_FILE):
        load_run(copy)


def test_text_only_runs_without_a_graph_encoder(train_tiny, mp36k_slice, tmp_path):
    run_dir = train_tiny("text_only")
    graph_run = train_tiny("graph_only")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["fusion"] == "text_only"
    assert summary["n_params"] < json.loads((graph_run / "summary.json").read_text())["n_params"]
    assert not any(k.startswith("encoder.") for k in _keys(run_dir / WEIGHTS_FILE))
    out = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(run_dir), "--data", str(mp36k_slice), "--out", str(out)]) == 0
    predicted, expected = _read_csv(out), _read_csv(run_dir / "predictions_test.csv")
    assert all(predicted[i] == pytest.approx(v, abs=1e-6) for i, v in expected.items())


def test_robustness_corrupts_the_text_a_fine_tuned_encoder_reads(lora_run):
    """``crysfuse robustness`` on a fine-tuned run: corrupted texts are tokenized and really reach the encoder."""
    from crysfuse.analysis.robustness import evaluate, load_evaluation_set
    from crysfuse.data.corruption import Corruption

    evaluation = load_evaluation_set(lora_run, split="test")
    clean = evaluate(evaluation, None)
    assert clean["mae"] == pytest.approx(json.loads((lora_run / "summary.json").read_text())["test_mae"], rel=1e-5)
    deleted = evaluate(evaluation, Corruption("sentence", "delete", 1.0))
    assert deleted["mae"] != clean["mae"]


def test_diagnose_deletes_the_text_a_fine_tuned_encoder_reads(lora_run):
    """``crysfuse diagnose`` on a fine-tuned run: the text-deleted items carry token ids, not embeddings."""
    from crysfuse.analysis.diagnose import diagnose, text_effect

    diagnosis = diagnose(lora_run, split="test")
    effect = text_effect(diagnosis.clean, diagnosis.deleted)
    assert effect["mae_clean"] == pytest.approx(json.loads((lora_run / "summary.json").read_text())["test_mae"],
                                                rel=1e-5)
    assert effect["mae_text_deleted"] != effect["mae_clean"]


def test_explain_reads_the_attention_of_a_fine_tuned_run(lora_run):
    """``crysfuse explain`` on a fine-tuned run: the maps cover the token ids the trained encoder read."""
    from crysfuse.analysis.explain import explain

    (explanation,) = explain(lora_run, n=1)
    assert explanation.maps and explanation.text.tokens
    for attention in explanation.maps:
        assert np.asarray(attention.token_weights).sum(axis=-1) == pytest.approx(1.0, abs=1e-4)
