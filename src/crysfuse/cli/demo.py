"""``crysfuse demo``: the whole path offline on an embedded EMT data set, two variants, one table."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="offline demo: EMT alloys, graph_only vs simplified")
    parser.add_argument("--out", default="demo_runs", help="where the data and run directories go")
    parser.add_argument("--num-structures", type=int, default=240)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--fusions", default="graph_only,simplified", help="comma-separated variants")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crysfuse.api import run_demo

    results = run_demo(args.out, num_structures=args.num_structures, epochs=args.epochs,
                       fusions=args.fusions.split(","))
    print()
    print(f"{'fusion':<14} {'val MAE':>9} {'test MAE':>9} {'params':>9} {'+fusion':>8} {'seconds':>8}  run directory")
    for result in results:
        s = result.summary
        print(f"{s['fusion']:<14} {s['val_mae']:>9.4f} {s['test_mae']:>9.4f} {s['n_params']:>9,} "
              f"{s['n_params_fusion']:>8,} {s['train_seconds']:>8.1f}  {result.run_dir}")
    print("MAE in eV/atom (EMT formation energy); model selected on validation, test reported once.")
    return 0
