"""``crysfuse robustness``: a trained run evaluated under seeded text corruption."""

from __future__ import annotations

import argparse
from pathlib import Path


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
    from crysfuse.io import write_csv_atomic, write_json_atomic
    from crysfuse.plots import lines_by_group, save_figure
    from crysfuse.robustness import load_evaluation_set, robustness_table

    out = Path(args.out)
    evaluation = load_evaluation_set(args.checkpoint, split=args.split, data=args.data, limit=args.limit)
    rows = robustness_table(evaluation, args.strategies.split(","), args.modes.split(","), args.ratios,
                            seed=args.seed)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    write_csv_atomic(out / "robustness.csv", columns, ([row.get(c, "") for c in columns] for row in rows))
    write_json_atomic(out / "robustness.json", {"run": str(args.checkpoint), "split": args.split,
                                                "seed": args.seed, "rows": rows})
    save_figure(lines_by_group(rows, x="ratio", y="mae", group=["strategy", "mode"],
                               title="MAE under text corruption", ylabel="MAE"), out / "robustness_mae.png")
    gate_keys = [c for c in columns if c.endswith("_mean") and c.count("_") >= 1 and c not in ("mae",)]
    for key in gate_keys:
        save_figure(lines_by_group(rows, x="ratio", y=key, group=["strategy", "mode"],
                                   title=f"{key} under text corruption", ylabel=key),
                    out / f"robustness_{key}.png")
    clean = rows[0]
    print(f"clean MAE {clean['mae']:.4f}; wrote {out / 'robustness.csv'} ({len(rows)} rows)")
    return 0
