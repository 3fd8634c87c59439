"""A small side-by-side on one mp36k slice and one budget: graph only, text only (frozen and fine-tuned
encoder) and a fused variant (frozen and fine-tuned), over several seeds — MAE, seconds per epoch, peak memory.

Each cell is a real ``crysfuse train`` run in its own process (``--preset cpu-small``, fixed epochs, no early
stopping); its peak resident memory is that process's ``ru_maxrss`` (``os.wait4``), its seconds per epoch the
mean of ``metrics.jsonl``'s training-epoch seconds. Prints one JSON object. Usage::

    python benchmarks/text_side_by_side.py                   # 200 records, 3 epochs, seeds 0 1, LoRA
    python benchmarks/text_side_by_side.py --finetune last_k --quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--limit", type=int, default=200, help="the first N records of mp36k")
    p.add_argument("--target", default="gap pbe")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--fused", default="simplified", help="the fused variant")
    p.add_argument("--finetune", default="lora", help="text.finetune of the fine-tuned rows")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", help="where the runs go (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.quick:
        args.limit, args.epochs, args.seeds, args.max_length = 40, 1, [0], 32
    return args


def rows(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(label, fusion, text.finetune) of every row."""
    tuned = args.finetune
    return [("graph_only", "graph_only", "none"), ("text_only", "text_only", "none"),
            (f"text_only+{tuned}", "text_only", tuned), (args.fused, args.fused, "none"),
            (f"{args.fused}+{tuned}", args.fused, tuned)]


def train_cell(args: argparse.Namespace, fusion: str, finetune: str, seed: int, run_dir: Path,
               cache_dir: Path) -> dict:
    command = [sys.executable, "-m", "crysfuse", "train", "--data", str(C.MP36K), "--target", args.target,
               "--limit", str(args.limit), "--fusion", fusion, "--epochs", str(args.epochs), "--seed", str(seed),
               "--preset", "cpu-small", "--text-file", str(C.MP36K_TEXT), "--run-dir", str(run_dir),
               "--cache-dir", str(cache_dir), "--set", f"text.finetune={finetune}",
               "--set", f"text.max_length={args.max_length}", "--set", "train.progress_bar=false",
               "--set", "train.patience=null", "--set", "monitor.enabled=false"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"training failed: {' '.join(command)} (log: {run_dir.parent / run_dir.name}.log)")
    summary = json.loads((run_dir / "summary.json").read_text())
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"seed": seed, "val_mae": summary["val_mae"], "test_mae": summary["test_mae"],
            "epoch_s": statistics.mean(e["seconds"] for e in epochs), "train_seconds": summary["train_seconds"],
            "peak_rss_mb": usage.ru_maxrss / 1024.0, "n_params": summary["n_params"],
            "text_truncated": summary["text_truncated"],
            "n_train": summary["n_train"], "n_val": summary["n_val"], "n_test": summary["n_test"]}


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="text_side_by_side_"))
    cache_dir = work / "cache"
    table = {}
    for label, fusion, finetune in rows(args):
        cells = []
        for seed in args.seeds:
            run_dir = work / "runs" / label / f"seed{seed}"
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            C.log(f"text_side_by_side: {label} seed {seed}")
            cells.append(train_cell(args, fusion, finetune, seed, run_dir, cache_dir))
        table[label] = {"fusion": fusion, "finetune": finetune, "cells": cells,
                        **{key: mean_std([c[key] for c in cells])
                           for key in ("val_mae", "test_mae", "epoch_s", "peak_rss_mb")},
                        "n_params": cells[0]["n_params"]}
    result = {
        "benchmark": "text_side_by_side",
        "quick": args.quick,
        "environment": C.environment(args.threads),
        "setup": {"data": "mp36k.json.gz", "limit": args.limit, "target": args.target, "epochs": args.epochs,
                  "seeds": args.seeds, "preset": "cpu-small", "max_length": args.max_length,
                  "texts": "mp36k.desc_jarvis.jsonl.gz", "split": "seeded 0.8/0.1/0.1 (data.split_seed 0)",
                  "early_stopping": False, "selection": "best validation epoch"},
        "rows": table,
    }
    C.emit(result)
    return result


if __name__ == "__main__":
    main()
