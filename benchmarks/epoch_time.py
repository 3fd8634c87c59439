"""End to end: ``crysfuse train`` seconds per epoch on the full mp36k training split, before and after.

A full mp36k epoch (29,389 training crystals) at the default model takes tens of minutes on 2 cores, so each
measured run trains two epochs on a seeded subset of the canonical training ids (default 3,200 = 100 steps
of 32; its crystals have the full split's size distribution) and validates on 320 validation ids. Seconds
per full epoch = the run's second epoch (``metrics.jsonl`` ``seconds``: training + validation; the first
also pays one-off warm-up) scaled by 29,389 / subset. Every run is a real ``crysfuse train`` process, so data loading, collation, Lightning
and the allocator are all included.

"Before" is any other checkout of crysfuse (e.g. a ``git worktree`` at the commit before a change): each
side runs as ``python -m crysfuse`` with ``PYTHONPATH=<checkout>/src``. Sides alternate within each
configuration so load on a shared machine hits both alike::

    git worktree add /tmp/crysfuse-before f98913d
    python benchmarks/epoch_time.py --side before=/tmp/crysfuse-before --side after=. \\
        --precision after=bf16-mixed > docs/benchmarks/epoch_time_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import DATA, MP36K, REPO, emit, environment, log

CANONICAL_SPLIT = DATA / "mp36k.split.json"
FULL_TRAIN = 29_389
MODELS: dict[str, list[str]] = {
    # crysfuse's default model (4 ALIGNN + 4 GCN layers, hidden 256): no model overrides.
    "default": [],
    # configs/cpu_small.yaml's model: 2 + 2 layers, hidden 64 (its data limit is replaced by the subset).
    "cpu_small": ["--set", "model.num_alignn_layers=2", "--set", "model.num_gcn_layers=2",
                  "--set", "model.dim_hidden=64"],
}


def write_split(path: Path, train: int, val: int, test: int, seed: int) -> dict[str, int]:
    """A seeded subset of the canonical split's ids (train / val / test drawn from their own parts)."""
    canonical = json.loads(CANONICAL_SPLIT.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    sizes = {"train": train, "val": val, "test": test}
    subset = {name: rng.sample(canonical[name], size) for name, size in sizes.items()}
    path.write_text(json.dumps(subset) + "\n", encoding="utf-8")
    return {name: len(canonical[name]) for name in sizes}


def run_side(checkout: Path, model: str, precision: str, split: Path, out: Path, cache: Path,
             threads: int, batch_size: int) -> dict[str, Any]:
    """Two ``crysfuse train`` epochs in a fresh process; returns the second epoch's seconds and the wall time."""
    run_dir = out / "run"
    command = [sys.executable, "-m", "crysfuse", "train", "--data", str(MP36K), "--target", "gap pbe",
               "--fusion", "graph_only", "--epochs", "2", "--run-dir", str(run_dir), "--cache-dir", str(cache),
               "--set", f"data.split_file={split}", "--set", f"train.batch_size={batch_size}",
               "--set", "train.progress_bar=false", "--set", f"train.precision={precision}", *MODELS[model]]
    env = dict(os.environ, PYTHONPATH=str(checkout / "src"), OMP_NUM_THREADS=str(threads))
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        log(proc.stderr[-3000:])
        raise SystemExit(f"crysfuse train failed in {checkout} ({model}, {precision})")
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    return {"first_epoch_seconds": metrics[0]["seconds"], "epoch_seconds": metrics[-1]["seconds"],
            "process_wall_seconds": round(wall, 1)}


def commit_of(checkout: Path) -> str:
    proc = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False)
    return proc.stdout.strip() or "unknown"


def parse_pairs(values: list[str]) -> dict[str, str]:
    return dict(value.split("=", 1) for value in values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", action="append", default=[], metavar="NAME=CHECKOUT",
                        help="a crysfuse checkout to time (repeatable; default: after=this checkout)")
    parser.add_argument("--precision", action="append", default=[], metavar="NAME=PRECISION",
                        help="extra precision for one side, e.g. after=bf16-mixed (32-true always runs)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--train", type=int, default=3200, help="training crystals per measured epoch")
    parser.add_argument("--val", type=int, default=320)
    parser.add_argument("--test", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny CI run (cpu_small, 64 crystals)")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.train, args.val, args.test = ["cpu_small"], 64, 32, 32
    sides = {name: Path(path).resolve() for name, path in parse_pairs(args.side or [f"after={REPO}"]).items()}
    extra = parse_pairs(args.precision)
    with tempfile.TemporaryDirectory(prefix="crysfuse-epoch-") as tmp:
        root = Path(tmp)
        split = root / "split.json"
        full = write_split(split, args.train, args.val, args.test, args.seed)
        scale = full["train"] / args.train
        results: dict[str, Any] = {}
        for model in args.models:
            for name, checkout in sides.items():
                for precision in ["32-true"] + ([extra[name]] if name in extra else []):
                    key = f"{model}/{name}/{precision}"
                    log(f"{key}: two epochs of {args.train} crystals")
                    # A cache of one's own per checkout: cache formats may differ between versions.
                    measured = run_side(checkout, model, precision, split, root / key.replace("/", "_"),
                                        root / f"cache_{name}", args.threads, args.batch_size)
                    measured["full_epoch_seconds"] = round(measured["epoch_seconds"] * scale, 1)
                    results[key] = measured
    emit({
        "benchmark": "epoch_time",
        "quick": args.quick,
        "environment": environment(args.threads),
        "setup": {"train_subset": args.train, "val_subset": args.val, "full_train": full["train"],
                  "scale": round(scale, 4), "batch_size": args.batch_size, "threads": args.threads,
                  "fusion": "graph_only", "sides": {name: {"path": str(path), "commit": commit_of(path)} for name, path in sides.items()}},
        "runs": results,
    })


if __name__ == "__main__":
    main()
