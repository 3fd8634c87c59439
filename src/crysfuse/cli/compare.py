"""``crysfuse compare``: run a comparison matrix, or summarise existing run directories."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="run a variants × seeds matrix, or compare finished runs")
    parser.add_argument("runs", nargs="*", help="run directories to summarise (instead of --matrix)")
    parser.add_argument("--matrix", help="matrix YAML (base config × variants × seeds × extra settings)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--jobs", type=int, default=1, help="cells trained in parallel processes")
    parser.add_argument("--baseline", help="label paired tests compare against (default: the matrix's, or "
                                           "graph_only)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crysfuse.compare import load_matrix, record_matrix, run_matrix
    from crysfuse.comparison import read_run, write_comparison
    from crysfuse.rundir import has_summary

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if bool(args.matrix) == bool(args.runs):
        raise SystemExit("crysfuse compare: give either --matrix FILE or run directories")
    baseline = args.baseline or "graph_only"
    if args.matrix:
        matrix = load_matrix(args.matrix, out)
        baseline = args.baseline or matrix.baseline
        outcome = run_matrix(matrix, jobs=args.jobs)
        record_matrix(out, matrix, outcome)
        run_dirs = [c.run_dir for c in matrix.cells if has_summary(c.run_dir)]
        print(f"matrix: {outcome['cells']} cells, {outcome['skipped']} already finished, {outcome['ran']} run, "
              f"{len(outcome['failed'])} failed")
    else:
        run_dirs = [Path(r) for r in args.runs]
        unfinished = [r for r in run_dirs if not has_summary(r)]
        if unfinished:
            logger.warning("skipping %d run directories without summary.json (not finished, or not runs): %s",
                           len(unfinished), ", ".join(map(str, unfinished)))
            run_dirs = [r for r in run_dirs if r not in unfinished]
        if not run_dirs:
            raise SystemExit("crysfuse compare: none of the given directories is a finished run")
    rows = write_comparison(out, [read_run(r) for r in run_dirs], baseline)
    print((out / "comparison.md").read_text(encoding="utf-8"))
    return 1 if args.matrix and outcome["failed"] else (0 if rows else 1)
