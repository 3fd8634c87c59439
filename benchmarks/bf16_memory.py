"""Memory of a bf16 training run with oneDNN's default primitive cache and with the cap the CLI sets.

Each side is a real ``crysfuse train`` process (``bf16-mixed``, one thread) on the same data, run at the same
time; the peak resident memory of each is read from ``resource.getrusage(RUSAGE_CHILDREN)`` in a wrapper
process of its own. The losses are identical by construction (the cache changes where primitives live, not
what they compute): the script checks it. ::

    python benchmarks/bf16_memory.py > docs/benchmarks/bf16_memory.json      # parity config, 4 epochs
    python benchmarks/bf16_memory.py --quick                                  # CI smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import MP36K, REPO, emit, environment, log

WRAPPER = """
import resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.call(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - started, code)
"""


def side_command(run_dir: Path, epochs: int, quick: bool) -> list[str]:
    command = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "crysfuse", "train", "--epochs", str(epochs),
               "--run-dir", str(run_dir), "--set", "train.precision=bf16-mixed", "--set", "train.patience=null",
               "--set", "train.progress_bar=false"]
    if quick:
        return [*command, "--data", str(MP36K), "--target", "gap pbe", "--fusion", "graph_only", "--limit", "64",
                "--preset", "cpu-small"]
    return [*command, "--config", str(REPO / "configs" / "parity" / "graph_gap.yaml")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--capacity", default="64", help="the capped side's ONEDNN_PRIMITIVE_CACHE_CAPACITY")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    epochs = 1 if args.quick else args.epochs
    capacities = {"onednn_default": "1024", "capped": args.capacity}  # 1024: oneDNN's documented default
    with tempfile.TemporaryDirectory(prefix="crysfuse-bf16mem-") as tmp:
        root = Path(tmp)
        procs = {}
        for name, capacity in capacities.items():
            env = dict(os.environ, ONEDNN_PRIMITIVE_CACHE_CAPACITY=capacity, OMP_NUM_THREADS=str(args.threads))
            log(f"{name}: ONEDNN_PRIMITIVE_CACHE_CAPACITY={capacity}, {epochs} epoch(s)")
            procs[name] = subprocess.Popen(side_command(root / name, epochs, args.quick), env=env, cwd=REPO,
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        sides = {}
        for name, proc in procs.items():
            out, _ = proc.communicate()
            maxrss_kb, seconds, code = out.strip().splitlines()[-1].split()
            if int(code) != 0:
                raise SystemExit(f"{name}: crysfuse train failed ({code})")
            metrics = [json.loads(line) for line in (root / name / "metrics.jsonl").read_text().splitlines()]
            sides[name] = {"onednn_primitive_cache_capacity": int(capacities[name]),
                           "peak_rss_mb": int(maxrss_kb) / 1024, "wall_seconds": float(seconds),
                           "epoch_seconds": [m["seconds"] for m in metrics],
                           "train_loss": [m["train_loss"] for m in metrics]}
    emit({
        "benchmark": "bf16_memory",
        "quick": args.quick,
        "environment": environment(args.threads),
        "setup": {"config": "--quick: cpu-small, 64 mp36k records" if args.quick else "configs/parity/graph_gap.yaml",
                  "epochs": epochs, "precision": "bf16-mixed", "sides_run": "at the same time, one process each"},
        "sides": sides,
        "ratios": {"peak_rss_capped_over_default": sides["capped"]["peak_rss_mb"]
                   / sides["onednn_default"]["peak_rss_mb"]},
        "identical_losses": sides["capped"]["train_loss"] == sides["onednn_default"]["train_loss"],
    })


if __name__ == "__main__":
    main()
