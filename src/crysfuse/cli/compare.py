"""``crysfuse compare``: run a comparison matrix, or summarise existing run directories."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="run a variants × seeds matrix, or compare finished runs")
    parser.add_argument("runs", nargs="*", help="run directories to summarise (instead of --matrix)")
    parser.add_argument("--matrix", help="matrix YAML (base config × variants × seeds × extra settings)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--jobs", type=int, default=1, help="cells trained in parallel processes")
    parser.add_argument("--baseline", help="label paired tests compare against (default: the matrix's, or "
                                           "graph_only)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="with --matrix: a config override applied to every cell (repeatable)")
    parser.add_argument("--only", help="with --matrix: run only these rows (comma-separated labels); the "
                                       "comparison still covers every finished cell of the matrix")
    parser.add_argument("--seeds", help="with --matrix: these seeds instead of the matrix's (comma-separated)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crysfuse.analysis.comparison import COMPARISON_MD, compare_runs, finished_runs
    from crysfuse.analysis.matrix import finished_cells, load_matrix, run_matrix_file

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if bool(args.matrix) == bool(args.runs):
        raise SystemExit("crysfuse compare: give either --matrix FILE or run directories")
    if args.matrix:
        matrix, outcome = run_matrix_file(
            args.matrix, out, jobs=args.jobs, overrides=args.overrides,
            only=args.only.split(",") if args.only else None,
            seeds=[int(s) for s in args.seeds.split(",")] if args.seeds else None)
        baseline = args.baseline or matrix.baseline
        # the comparison covers every finished cell of the matrix, not only this call's --only/--seeds part,
        # so a matrix run in pieces (and resumed across sessions) always has one comparison of all it holds
        whole = load_matrix(args.matrix, out, overrides=args.overrides)
        run_dirs = list(dict.fromkeys(finished_cells(whole) + finished_cells(matrix)))
        print(f"matrix: {outcome['cells']} cells, {outcome['skipped']} already finished, {outcome['ran']} run, "
              f"{len(outcome['failed'])} failed")
    else:
        baseline = args.baseline or "graph_only"
        run_dirs = finished_runs(args.runs)
        if not run_dirs:
            raise SystemExit("crysfuse compare: none of the given directories is a finished run")
    rows = compare_runs(run_dirs, out, baseline)
    print((out / COMPARISON_MD).read_text(encoding="utf-8"))
    return 1 if args.matrix and outcome["failed"] else (0 if rows else 1)
