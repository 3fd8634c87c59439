"""``crysfuse models``: the fusion variants, with the parameters each adds over ``graph_only``."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list fusion variants and their extra parameters")
    parser.add_argument("--config", help="config whose model/fusion sizes are used")
    parser.add_argument("--dim-text", type=int, default=384, help="text encoder width (MiniLM: 384)")
    parser.add_argument("--markdown", action="store_true",
                        help="print the variant table of docs/fusion.md (equations and diagnostics) instead")
    parser.add_argument("--match", metavar="VARIANT",
                        help="print the model.dim_head at which graph_only has as many parameters as VARIANT "
                             "(the parameter-matched control of docs/results.md)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crysfuse.config import Config
    from crysfuse.config_reference import render_variant_table
    from crysfuse.models.crysfuse import matched_head_width, variant_parameter_counts

    if args.markdown:
        print(render_variant_table(), end="")
        return 0

    base = Config.load(args.config) if args.config else Config()
    if args.match:
        width, params, target = matched_head_width(base, args.match, dim_text=args.dim_text)
        print(f"model.dim_head={width}  (graph_only {params:,} parameters, {args.match} {target:,})")
        return 0
    print(f"{'key':<16} {'extra params':>12} {'total':>10}  description")
    for name, extra, total, description in variant_parameter_counts(base, dim_text=args.dim_text):
        print(f"{name:<16} {extra:>12,} {total:>10,}  {description}")
    return 0
