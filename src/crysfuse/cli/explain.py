"""``crysfuse explain``: a trained model's atom↔token attention for chosen crystals (heatmaps, top words, JSON)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("explain", help="atom-token attention maps of a trained run for a few crystals")
    parser.add_argument("--checkpoint", required=True, help="run directory")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--ids", nargs="+", help="record ids to explain (default: the first --n of --split)")
    parser.add_argument("--n", type=int, default=3, help="crystals of the split when no --ids are given (3)")
    parser.add_argument("--split", default="test", choices=["test", "val", "train"])
    parser.add_argument("--data", help="data source (default: the run's own)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crysfuse.analysis.explain import explain, top_words, write_explanations

    if args.n < 1:
        raise SystemExit("crysfuse explain: --n must be at least 1")
    explanations = explain(args.checkpoint, ids=args.ids, n=args.n, split=args.split, data=args.data)
    paths = write_explanations(explanations, args.out, run=args.checkpoint)
    for explanation in explanations:
        print(f"{explanation.id}: target {explanation.target:.4g}, predicted {explanation.prediction:.4g}, "
              f"{len(explanation.atoms)} atoms, {len(explanation.text.words)} words")
        for attention in explanation.maps:
            for query, rows in _by_query(top_words(explanation, attention, k=3))[:4]:
                print(f"  {attention.name} {query}: " + ", ".join(f"{r['word']} {r['weight']:.3f}" for r in rows))
    print(f"wrote {len(paths)} files to {args.out}")
    return 0


def _by_query(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["query"], []).append(row)
    return list(grouped.items())
