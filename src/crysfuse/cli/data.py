"""``crysfuse data check PATH``: what a data source holds and what training would make of it.

Reads the source as ``crysfuse train`` does (same loaders, same graph builder and cache, same text join and
tokenizer) and prints: records usable / rejected by stage and reason, elements, atoms per cell, target
statistics, text coverage, length and truncation. Nothing is trained or described.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crysfuse.cli.args import config_from_args

FLAGS = {"text_file": "data.text_file", "cache_dir": "data.cache_dir"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="inspect data sources (crysfuse data check PATH)")
    actions = parser.add_subparsers(dest="data_command", required=True)
    check = actions.add_parser("check", help="summarise a data source: usable/rejected records, elements, "
                                             "atoms, target, text length and truncation")
    check.add_argument("path", help="data source: JSON(.gz), CGCNN or CrysMMNet folder, CSV/JSONL/Parquet table, "
                                    "or jarvis:<dataset>")
    check.add_argument("--target", help="target key / column (default: the config's data.target; for a CGCNN folder with a "
                                      "headerless id_prop.csv, its one value column; otherwise none)")
    check.add_argument("--limit", type=int, help="check only the first N records")
    check.add_argument("--text-file", help="descriptions joined by id (as for crysfuse train)")
    check.add_argument("--cache-dir", help="graph cache (as for crysfuse train)")
    check.add_argument("--no-graphs", action="store_true", help="skip building graphs (faster; fewer checks)")
    check.add_argument("--rejections", help="write the rejection manifest (id,stage,reason) to this CSV")
    check.add_argument("--json", help="also write the summary as JSON to this file")
    check.add_argument("--config", help="YAML/JSON config (graph settings, text encoder and max_length)")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crysfuse.data.check import check_source, format_summary
    from crysfuse.data.sources import default_target
    from crysfuse.io import write_json_atomic
    from crysfuse.rundir import write_rejections

    config = config_from_args(args, FLAGS, set_first=True)  # here the flags win over --set
    target = args.target if args.target is not None else (config.data.target or default_target(args.path))
    summary, rejections = check_source(args.path, target, config, limit=args.limit, graphs=not args.no_graphs)
    print(format_summary(summary))
    if args.rejections:
        write_rejections(Path(args.rejections), rejections)
        print(f"rejection manifest: {args.rejections}")
    if args.json:
        write_json_atomic(Path(args.json), summary)
    return 0 if summary["usable"] else 1
