"""Summarise groups of finished crysfuse run directories: test/val MAE per seed and mean ± std per group,
parameters, seconds per epoch and the precision each run used. Nothing here trains or evaluates a model.

    python scripts/run_table.py --group fp32='runs/parity_gap/graph_only_32-true_s*' \
        --group bf16='runs/parity_gap/graph_only_bf16-mixed_s*' --out docs/benchmarks/precision_parity.json

Writes the JSON file (every per-run number plus the group statistics) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
from pathlib import Path


def epoch_seconds(metrics_file: Path) -> list[float]:
    """Seconds of each epoch (training and validation) from ``metrics.jsonl``."""
    return [json.loads(line)["seconds"] for line in metrics_file.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def run_row(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    seconds = epoch_seconds(run_dir / "metrics.jsonl")
    return {
        "run_dir": str(run_dir),
        "seed": summary["seed"],
        "precision": config["train"]["precision"],
        "test_mae": summary["test_mae"],
        "val_mae": summary["val_mae"],
        "best_epoch": summary["best_epoch"],
        "epochs": len(seconds),
        "n_params": summary["n_params"],
        "seconds_per_epoch_median": statistics.median(seconds),
        "train_seconds": summary["train_seconds"],
        "n_train": summary["n_train"], "n_val": summary["n_val"], "n_test": summary["n_test"],
    }


def group_stats(rows: list[dict]) -> dict:
    def mean_std(key: str) -> tuple[float, float]:
        values = [r[key] for r in rows]
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    test_mean, test_std = mean_std("test_mae")
    val_mean, val_std = mean_std("val_mae")
    return {"n": len(rows), "test_mae_mean": test_mean, "test_mae_std": test_std, "val_mae_mean": val_mean,
            "val_mae_std": val_std,
            "test_mae_range": [min(r["test_mae"] for r in rows), max(r["test_mae"] for r in rows)],
            "seconds_per_epoch_median": statistics.median(r["seconds_per_epoch_median"] for r in rows)}


def markdown(groups: dict[str, dict]) -> str:
    lines = ["| group | n | test MAE (mean ± std) | per seed | val MAE | s / epoch | parameters |",
             "|---|---|---|---|---|---|---|"]
    for label, group in groups.items():
        s, rows = group["stats"], group["runs"]
        spread = f"± {s['test_mae_std']:.4f}" if s["n"] > 1 else "(n = 1)"
        per_seed = ", ".join(f"{r['test_mae']:.4f}" for r in sorted(rows, key=lambda r: r["seed"]))
        lines.append(f"| {label} | {s['n']} | {s['test_mae_mean']:.4f} {spread} | {per_seed} | "
                     f"{s['val_mae_mean']:.4f} | {s['seconds_per_epoch_median']:.0f} | {rows[0]['n_params']:,} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", action="append", required=True, metavar="LABEL=GLOB",
                        help="run directories (a glob) summarised under LABEL; repeat per group")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    groups: dict[str, dict] = {}
    for spec in args.group:
        label, _, pattern = spec.partition("=")
        dirs = sorted(Path(p) for p in glob.glob(pattern) if (Path(p) / "summary.json").is_file())
        if not dirs:
            parser.error(f"group {label!r}: no finished run directory matches {pattern!r}")
        rows = [run_row(d) for d in dirs]
        groups[label] = {"pattern": pattern, "runs": rows, "stats": group_stats(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(groups, indent=1) + "\n", encoding="utf-8")
    print(markdown(groups))


if __name__ == "__main__":
    main()
