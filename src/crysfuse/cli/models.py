"""``crysfuse models``: the fusion variants, with the parameters each adds over ``graph_only``."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list fusion variants and their extra parameters")
    parser.add_argument("--config", help="config whose model/fusion sizes are used")
    parser.add_argument("--dim-text", type=int, default=384, help="text encoder width (MiniLM: 384)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crysfuse.config import Config
    from crysfuse.fusion import FUSION
    from crysfuse.models.crysfuse import CrysFuseModel

    base = Config.load(args.config) if args.config else Config()
    rows = []
    for name in FUSION.names():
        config = base.with_overrides([f"fusion.name={name}"])
        model = CrysFuseModel(config, dim_text=args.dim_text)
        rows.append((name, model.num_fusion_parameters(), model.num_parameters(), FUSION.get(name).description))
    print(f"{'key':<16} {'extra params':>12} {'total':>10}  description")
    for name, extra, total, description in rows:
        print(f"{name:<16} {extra:>12,} {total:>10,}  {description}")
    return 0
