"""Crash safety of a fine-tuned run: kill -9 mid-training, resume, and get what an uninterrupted run gets
(the encoder's weights, its optimizer group and its own schedule all come back from the resume state)."""

from __future__ import annotations

import json

from tests.training.test_reliability import (
    _assert_same_results,
    _cli_process,
    _kill_after_first_epoch,
    _train_args,
)

FINETUNE = ("train.epochs=4", "text.finetune=lora", "text.lora_rank=4", "text.max_length=32")


def test_kill_9_then_resume_a_lora_run_matches_an_uninterrupted_one(tmp_path, mp36k_slice, cache_dir):
    reference = tmp_path / "reference"
    assert _cli_process(_train_args(mp36k_slice, reference, cache_dir, *FINETUNE)).wait(timeout=600) == 0

    run_dir = tmp_path / "killed"
    process = _cli_process(_train_args(mp36k_slice, run_dir, cache_dir, *FINETUNE))
    _kill_after_first_epoch(process, run_dir, timeout=300)
    assert _cli_process(_train_args(mp36k_slice, run_dir, cache_dir, *FINETUNE) + ["--resume"]).wait(600) == 0
    _assert_same_results(reference, run_dir)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all("lr_text" in m for m in metrics)
