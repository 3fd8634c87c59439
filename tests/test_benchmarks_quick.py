"""Each benchmark runs in ``--quick`` mode and prints one JSON object with the expected keys.

These are smoke tests so the scripts cannot rot; they never assert on timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_shared

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
DATA = ROOT.parent / "shared" / "data" / "mp36k.json.gz"



@pytest.fixture(autouse=True)
def _mp36k() -> None:
    require_shared(DATA)


def run_quick(name: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(BENCH / name), "--quick", "--threads", "1"],
        check=False, capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["quick"] is True
    assert {"benchmark", "environment", "setup"} <= set(result)
    return result


def test_graph_build_quick() -> None:
    pytest.importorskip("alignn.torch_graph_builder")
    r = run_quick("graph_build.py")
    assert {"crysfuse", "pure_torch", "classic"} <= set(r["sides"])
    assert {"speedup_vs_pure_torch", "speedup_vs_classic"} <= set(r["ratios"])
    assert r["agreement"]["classic"]["missing_reference_edges"] == 0
    assert 0.0 <= r["agreement"]["pure_torch"]["identical_fraction"] <= 1.0


def test_train_step_quick() -> None:
    pytest.importorskip("alignn.models.alignn_atomwise_pure")
    r = run_quick("train_step.py")
    assert {"graph_only", "graph_only_bf16", "simplified", "reference"} <= set(r["sides"])
    for side in r["sides"].values():
        assert side["train_structures_per_s"] > 0 and side["infer_structures_per_s"] > 0
        assert side["peak_rss_mb"] > 0 and side["train_gflop_per_step"] > 0
    assert {"train_speedup_graph_only_vs_reference", "infer_speedup_graph_only_vs_reference",
            "peak_rss_graph_only_over_reference"} <= set(r["ratios"])
    assert r["matmul_peak_gflops"]["model_shape"] > 0


def test_text_overhead_quick() -> None:
    r = run_quick("text_overhead.py")
    finetune = {"fused_last_k", "fused_all", "fused_lora", "text_only_cached", "text_only_lora"}
    assert {"graph_only", "fused_cached", "fused_reencode"} | finetune <= set(r["sides"])
    assert {"fused_cached_over_graph_only", "reencode_over_cached"} <= set(r["ratios"])
    assert {f"{name}_over_graph_only" for name in finetune} <= set(r["ratios"])
    sides = r["sides"]
    for side in sides.values():
        assert side["step_s"] > 0 and side["peak_rss_mb"] > 0
    # what trains: nothing of the encoder when it is frozen, a little with LoRA, every weight with `all`
    assert sides["fused_cached"]["trained_text_encoder_parameters"] == 0
    assert 0 < sides["fused_lora"]["trained_text_encoder_parameters"] < sides["fused_last_k"][
        "trained_text_encoder_parameters"] < sides["fused_all"]["trained_text_encoder_parameters"]


def test_preprocess_quick() -> None:
    r = run_quick("preprocess.py")
    assert {"graphs", "descriptions", "embeddings"} <= set(r["throughput_per_s"])
    assert {"graphs", "descriptions", "embeddings"} <= set(r["cache_reload_per_s"])


def test_startup_quick() -> None:
    r = run_quick("startup.py")
    assert {"cold", "before", "first_after", "warm"} <= set(r["sides"])
    assert r["rejections_identical"] is True
    assert r["sides"]["warm"]["structures_parsed"] == 0
    assert r["sides"]["before"]["structures_parsed"] == r["sides"]["before"]["items"] > 0
    assert len({side["items"] for side in r["sides"].values()}) == 1


def test_epoch_time_quick() -> None:
    r = run_quick("epoch_time.py")
    (key, run), = r["runs"].items()
    assert key == "cpu_small/after/32-true"
    assert 0 < run["epoch_seconds"] < run["process_wall_seconds"]
    assert run["full_epoch_seconds"] == pytest.approx(run["epoch_seconds"] * r["setup"]["scale"], rel=1e-3)


def test_text_side_by_side_quick() -> None:
    r = run_quick("text_side_by_side.py")
    assert {"graph_only", "text_only", "text_only+lora", "simplified", "simplified+lora"} == set(r["rows"])
    for row in r["rows"].values():
        assert row["val_mae"]["mean"] > 0 and row["epoch_s"]["mean"] > 0 and row["peak_rss_mb"]["mean"] > 0
    assert r["rows"]["text_only"]["n_params"] < r["rows"]["graph_only"]["n_params"]  # no graph encoder


def test_bf16_memory_quick() -> None:
    r = run_quick("bf16_memory.py")
    assert set(r["sides"]) == {"onednn_default", "capped"}
    assert r["identical_losses"] is True
    assert all(side["peak_rss_mb"] > 0 for side in r["sides"].values())
