"""Summarise groups of finished crysfuse run directories: test/val MAE per seed and mean ± std per group,
parameters, seconds per epoch and the precision each run used. Nothing here trains or evaluates a model.

    python scripts/run_table.py --group fp32='runs/parity_gap/graph_only_32-true_s*' \
        --group bf16='runs/parity_gap/graph_only_bf16-mixed_s*' --out docs/benchmarks/precision_parity.json

Parity + ablation table (docs/parity.md): every row of a ``crysfuse compare`` matrix (``--runs-root``, one
group per ``<root>/<label>/seed*``; a row with no finished seed yet is left out with a warning), the
reference ALIGNN's seeds (``--reference``, a summary written by ``scripts/reference_alignn.py collect``) and
the change of each group's mean test MAE against a baseline::

    python scripts/run_table.py --reference reference=docs/parity/reference_gap_pbe.json \
        --runs-root docs/parity/gap/runs --baseline reference --out docs/parity/ablation_gap.json

Writes the JSON file (every per-run number plus the group statistics) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import statistics
from pathlib import Path

logger = logging.getLogger("run_table")


def epoch_metrics(metrics_file: Path) -> list[dict]:
    """One record per epoch from ``metrics.jsonl`` (``seconds``, ``train_mae``, ``val_mae``, ...)."""
    return [json.loads(line) for line in metrics_file.read_text(encoding="utf-8").splitlines() if line.strip()]


def run_row(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    epochs = epoch_metrics(run_dir / "metrics.jsonl")
    seconds = [e["seconds"] for e in epochs]
    return {
        "run_dir": str(run_dir),
        "seed": summary["seed"],
        "precision": config["train"]["precision"],
        "test_mae": summary["test_mae"],
        "val_mae": summary["val_mae"],
        # mean training MAE over the last epoch's batches (training mode, target units)
        "final_train_mae": epochs[-1].get("train_mae"),
        "best_epoch": summary["best_epoch"],
        "epochs": len(seconds),
        "n_params": summary["n_params"],
        "seconds_per_epoch_median": statistics.median(seconds),
        "train_seconds": summary["train_seconds"],
        "n_train": summary["n_train"], "n_val": summary["n_val"], "n_test": summary["n_test"],
    }


def reference_rows(summary_file: Path) -> list[dict]:
    """The seeds of a ``scripts/reference_alignn.py collect`` summary as rows like :func:`run_row`'s (the
    reference has no validation MAE of the tested weights: it tests the last epoch)."""
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    sizes = summary.get("sizes", {})
    return [{"run_dir": str(summary_file), "seed": seed["seed"], "precision": "32-true (alignn)",
             "test_mae": seed["test_mae"], "val_mae": None,
             "final_train_mae": seed.get("final_train_l1"), "best_epoch": seed.get("best_val_epoch"),
             "epochs": seed["epochs"], "n_params": seed.get("n_params"),
             "seconds_per_epoch_median": seed["epoch_seconds"], "train_seconds": seed.get("train_seconds"),
             "n_train": sizes.get("train"), "n_val": sizes.get("val"), "n_test": seed.get("n_test")}
            for seed in summary["seeds"]]


def group_stats(rows: list[dict]) -> dict:
    def mean_std(key: str) -> tuple[float | None, float | None]:
        values = [r[key] for r in rows if r[key] is not None]
        if not values:
            return None, None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    test_mean, test_std = mean_std("test_mae")
    val_mean, val_std = mean_std("val_mae")
    train_mean, _ = mean_std("final_train_mae")
    return {"n": len(rows), "test_mae_mean": test_mean, "test_mae_std": test_std, "val_mae_mean": val_mean,
            "val_mae_std": val_std, "final_train_mae_mean": train_mean,
            "test_mae_range": [min(r["test_mae"] for r in rows), max(r["test_mae"] for r in rows)],
            "seconds_per_epoch_median": statistics.median(r["seconds_per_epoch_median"] for r in rows)}


def markdown(groups: dict[str, dict], baseline: str | None = None) -> str:
    lines = ["| group | n | test MAE (mean ± std) | per seed | val MAE | train MAE, last epoch | s / epoch "
             "| parameters |" + (f" vs {baseline} |" if baseline else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if baseline else "")]
    base = groups[baseline]["stats"]["test_mae_mean"] if baseline else None
    for label, group in groups.items():
        s, rows = group["stats"], group["runs"]
        spread = f"± {s['test_mae_std']:.4f}" if s["n"] > 1 else "(n = 1)"
        per_seed = ", ".join(f"{r['test_mae']:.4f}" for r in sorted(rows, key=lambda r: r["seed"]))
        val = f"{s['val_mae_mean']:.4f}" if s["val_mae_mean"] is not None else "—"
        fit = f"{s['final_train_mae_mean']:.4f}" if s.get("final_train_mae_mean") is not None else "—"
        params = f"{rows[0]['n_params']:,}" if rows[0]["n_params"] is not None else "—"
        line = (f"| {label} | {s['n']} | {s['test_mae_mean']:.4f} {spread} | {per_seed} | {val} | {fit} | "
                f"{s['seconds_per_epoch_median']:.0f} | {params} |")
        if base:
            line += f" {100.0 * (s['test_mae_mean'] - base) / base:+.1f} % |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", action="append", default=[], metavar="LABEL=GLOB",
                        help="run directories (a glob) summarised under LABEL; repeat per group")
    parser.add_argument("--reference", action="append", default=[], metavar="LABEL=JSON",
                        help="a scripts/reference_alignn.py collect summary, as group LABEL (listed first)")
    parser.add_argument("--runs-root", action="append", default=[], type=Path, metavar="DIR",
                        help="a crysfuse compare matrix's runs folder: one group per DIR/<label>/seed*")
    parser.add_argument("--baseline", help="a group label: add each group's change of mean test MAE against it")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    groups: dict[str, dict] = {}
    for spec in args.reference:
        label, _, path = spec.partition("=")
        rows = reference_rows(Path(path))
        groups[label] = {"pattern": path, "runs": rows, "stats": group_stats(rows)}
    matrix_groups = set()
    for root in args.runs_root:
        for folder in sorted(d for d in root.iterdir() if d.is_dir()):
            args.group.append(f"{folder.name}={folder / 'seed*'}")
            matrix_groups.add(folder.name)
    if not args.group and not groups:
        parser.error("give at least one --group, --runs-root or --reference")
    for spec in args.group:
        label, _, pattern = spec.partition("=")
        dirs = sorted(Path(p) for p in glob.glob(pattern) if (Path(p) / "summary.json").is_file())
        if not dirs and label in matrix_groups:  # a matrix row still training: not a table row yet
            logger.warning("group %r: no finished run under %s yet, left out", label, pattern)
            continue
        if not dirs:
            parser.error(f"group {label!r}: no finished run directory matches {pattern!r}")
        rows = [run_row(d) for d in dirs]
        groups[label] = {"pattern": pattern, "runs": rows, "stats": group_stats(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.baseline and args.baseline not in groups:
        parser.error(f"--baseline {args.baseline!r} is not a group; groups: {sorted(groups)}")
    args.out.write_text(json.dumps(groups, indent=1) + "\n", encoding="utf-8")
    print(markdown(groups, args.baseline))


if __name__ == "__main__":
    main()
