"""``crysfuse robustness``: a trained run evaluated under seeded text corruption."""

from __future__ import annotations

import argparse


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("robustness", help="evaluate a run with corrupted or missing text")
    parser.add_argument("--checkpoint", required=True, help="run directory")
    parser.add_argument("--strategies", default="random_token,random_word,sentence,keep_keywords")
    parser.add_argument("--modes", default="mask,delete")
    parser.add_argument("--ratios", type=_floats, default=[0, 0.2, 0.4, 0.6, 0.8, 1.0])
    parser.add_argument("--split", default="test", choices=["test", "val", "train"])
    parser.add_argument("--data", help="data source (default: the run's own)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N records of the split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crysfuse.analysis.robustness import load_evaluation_set, robustness_table, write_robustness

    evaluation = load_evaluation_set(args.checkpoint, split=args.split, data=args.data, limit=args.limit)
    rows = robustness_table(evaluation, args.strategies.split(","), args.modes.split(","), args.ratios,
                            seed=args.seed)
    table = write_robustness(args.out, rows, run=args.checkpoint, split=args.split, seed=args.seed)
    print(f"clean MAE {rows[0]['mae']:.4f}; wrote {table} ({len(rows)} rows)")
    return 0
