"""``crysfuse diagnose``: metrics with and without text, gate statistics, stability and a recommendation."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("diagnose", help="diagnose a trained run's fusion gates and recommend a variant")
    parser.add_argument("--checkpoint", required=True, help="run directory")
    parser.add_argument("--data", help="data source (default: the run's own)")
    parser.add_argument("--split", default="test", choices=["test", "val"])
    parser.add_argument("--n-samples", type=int, help="use only the first N records of the split (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap interval")
    parser.add_argument("--out", required=True, help="output directory")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crysfuse.analysis.diagnose import diagnose, write_diagnosis

    if args.n_samples is not None and args.n_samples < 1:
        raise SystemExit("crysfuse diagnose: --n-samples must be at least 1")
    diagnosis = diagnose(args.checkpoint, split=args.split, data=args.data, n_samples=args.n_samples,
                         seed=args.seed)
    paths = write_diagnosis(diagnosis, args.out)
    report = diagnosis.report
    clean, deleted = report["metrics"]["clean"], report["metrics"]["text_deleted"]
    print(f"{report['n_samples']} samples: MAE {clean['mae']:.4f} (all text deleted: {deleted['mae']:.4f})")
    for rec in report["recommendations"]:
        print(f"recommendation: {rec['action']} - {rec['reason']}")
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0
