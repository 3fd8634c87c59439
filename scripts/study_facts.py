"""The numbers that the prose of docs/results.md may quote about the study, from the committed files: every
numeric field of each ``comparison.json`` under ``docs/results/study`` (means, stds, differences, interval
bounds, p-values, per-class MAEs), the losses with all text deleted (deleted − clean), and per run its test and
validation MAE, best epoch, training seconds and the spread of a row's per-seed test MAEs::

    python scripts/study_facts.py                  # all facts, one per line: name, value
    python scripts/study_facts.py --grep quality   # only those whose name contains "quality"

tests/test_docs_numbers.py checks that every decimal number in the prose of the page's study section is one of
these (rounded as the page rounds it), so the prose cannot drift from the data when the tables are regenerated.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

from crysfuse.analysis.comparison import RunInfo, read_run
from crysfuse.rundir import has_summary


def _numbers(prefix: str, value: object) -> Iterator[tuple[str, float]]:
    """``(name, number)`` for a number or a list of numbers; nothing for other values (``None``, text)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield prefix, float(value)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _numbers(f"{prefix}[{i}]", item)


def run_facts(name: str, run: RunInfo) -> Iterator[tuple[str, float]]:
    """Facts of one finished run: test / val MAE, best epoch, training seconds, MAE with the text deleted
    (read as ``crysfuse compare`` reads it, so a run's loss is defined as its comparison row's)."""
    for key in ("test_mae", "val_mae", "best_epoch", "train_seconds"):
        yield f"{name}.{key}", float(run.summary[key])
    if run.deleted_mae is not None:
        yield f"{name}.deleted_text_mae", run.deleted_mae
        if run.robustness_clean_mae is not None:
            yield f"{name}.deleted_text_loss", run.deleted_mae - run.robustness_clean_mae


def comparison_facts(comparison_file: Path, root: Path = Path()) -> Iterator[tuple[str, float]]:
    """Facts of one comparison: its rows' numeric fields and derived numbers, and its runs' facts."""
    comparison = json.loads(comparison_file.read_text(encoding="utf-8"))
    matrix = comparison_file.parent.name
    for row in comparison["rows"]:
        name = f"{matrix}.{row['label']}"
        for key, value in row.items():
            yield from _numbers(f"{name}.{key}", value)
        if row.get("deleted_text_mae_mean") is not None and row.get("robustness_clean_mae_mean") is not None:
            yield f"{name}.deleted_text_loss", row["deleted_text_mae_mean"] - row["robustness_clean_mae_mean"]
    test_maes: dict[str, list[float]] = {}
    for run_dir in (root / run for run in comparison["runs"]):
        if not has_summary(run_dir):
            continue
        run = read_run(run_dir)
        yield from run_facts(f"{matrix}.{run_dir.parent.name}.{run_dir.name}", run)
        test_maes.setdefault(f"{matrix}.{run_dir.parent.name}", []).append(float(run.summary["test_mae"]))
    for name, values in test_maes.items():
        if len(values) > 1:
            yield f"{name}.seed_spread", max(values) - min(values)


def study_facts(results: Path = Path("docs/results/study"), root: Path = Path()) -> dict[str, float]:
    """Every fact of every comparison under ``results`` (run directories resolved against ``root``)."""
    facts: dict[str, float] = {}
    for comparison_file in sorted(results.glob("*/comparison.json")):
        facts.update(comparison_facts(comparison_file, root))
    return facts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="docs/results/study", help="folder of the study's comparisons")
    parser.add_argument("--grep", default="", help="only facts whose name contains this")
    args = parser.parse_args(argv)
    for name, value in study_facts(Path(args.results)).items():
        if args.grep in name:
            print(f"{name}\t{value:.6g}")  # the script's output is the list; logging is for diagnostics


if __name__ == "__main__":
    main()
