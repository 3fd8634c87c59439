"""The study's progress and the compute it has used, from the committed run directories: for every matrix in
``configs/study/`` (its cells expanded as ``crysfuse compare --matrix`` expands them, with run directories
under ``docs/results/study/<matrix>/runs``), how many cells are planned and finished, and the training time of
the finished ones (``train_seconds`` of their ``summary.json``: training only, one core per run; the robustness
evaluation after training is not timed)::

    python scripts/study_compute.py --out docs/results/study/compute.json

Writes the JSON file and prints a Markdown table (docs/results.md shows it; tests/test_docs_numbers.py
regenerates both).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from crysfuse.analysis.matrix import load_matrix
from crysfuse.rundir import has_summary, read_summary


def matrix_progress(matrix_file: Path, results_root: Path) -> dict:
    """Cells planned and finished of one matrix and the summed training seconds of the finished ones."""
    out = results_root / matrix_file.stem
    cells = load_matrix(matrix_file, out).cells
    finished = [c for c in cells if has_summary(c.run_dir)]
    seconds = [float(read_summary(c.run_dir)["train_seconds"]) for c in finished]
    return {"matrix": matrix_file.stem, "cells": len(cells), "finished": len(finished),
            "finished_labels": sorted(f"{c.label}/seed{c.seed}" for c in finished),
            "train_seconds": round(sum(seconds), 1), "train_core_hours": round(sum(seconds) / 3600.0, 2)}


def _size_order(path: Path) -> tuple[str, int]:
    """``curve_1500`` before ``curve_29389``: by name, then by the trailing number."""
    stem, _, number = path.stem.rpartition("_")
    return (stem, int(number)) if number.isdigit() else (path.stem, 0)


def markdown(rows: list[dict]) -> str:
    lines = ["| matrix | cells finished | training core-hours used |", "|---|---|---|"]
    lines += [f"| {r['matrix']} | {r['finished']} of {r['cells']} | {r['train_core_hours']:.2f} |" for r in rows]
    total_finished = sum(r["finished"] for r in rows)
    total_cells = sum(r["cells"] for r in rows)
    total_hours = sum(r["train_seconds"] for r in rows) / 3600.0
    lines.append(f"| all | {total_finished} of {total_cells} | {total_hours:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matrices", default="configs/study", help="folder of the study's matrix files")
    parser.add_argument("--results", default="docs/results/study", help="folder of the matrices' outputs")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    matrix_files = sorted((p for p in Path(args.matrices).glob("*.yaml") if p.stem != "study"), key=_size_order)
    rows = [matrix_progress(path, Path(args.results)) for path in matrix_files]
    Path(args.out).write_text(json.dumps({"matrices": rows}, indent=1) + "\n", encoding="utf-8")
    print(markdown(rows))  # the script's output is the table; logging is for diagnostics


if __name__ == "__main__":
    main()
