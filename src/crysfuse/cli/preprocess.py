"""``crysfuse preprocess``: fill the graph / description / embedding caches of a data source in parallel.

Afterwards ``crysfuse train --cache-dir DIR`` (same data, graph and text settings) finds everything cached and
reads it lazily. Re-runs are incremental; damaged entries are rebuilt.
"""

from __future__ import annotations

import argparse

from crysfuse.cli.args import config_from_args

FLAGS = {
    "data": "data.path", "target": "data.target", "limit": "data.limit", "text_file": "data.text_file",
    "cache": "data.cache_dir", "describer": "text.describer", "encoder": "text.encoder",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("preprocess", help="build graphs, descriptions and text embeddings into a "
                                                      "cache (parallel, incremental)")
    parser.add_argument("--data", help="data source (as for crysfuse train)")
    parser.add_argument("--target", help="target key (optional; records are kept either way)")
    parser.add_argument("--limit", type=int, help="only the first N records")
    parser.add_argument("--text-file", help="descriptions joined by id (JSONL {id,text} or CSV id,text)")
    parser.add_argument("--describer", help="describer for records without text ('' disables it)")
    parser.add_argument("--encoder", help="text encoder (minilm, a local folder or a cached hub id)")
    parser.add_argument("--cache", "--cache-dir", dest="cache", help="cache folder (as --cache-dir for train)")
    parser.add_argument("--no-text", action="store_true", help="graphs only (for graph-only models)")
    parser.add_argument("--workers", type=int, default=2, help="graph worker processes (default 2)")
    parser.add_argument("--chunk-size", type=int, default=64, help="structures per worker task")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--config", help="YAML/JSON config file (flags and --set override it)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crysfuse.data.store import preprocess

    config = config_from_args(args, FLAGS)
    if not config.data.path:
        raise SystemExit("crysfuse preprocess: --data is required (or set data.path in --config)")
    summary = preprocess(config, workers=args.workers, chunk_size=args.chunk_size, uses_text=not args.no_text,
                         progress=not args.no_progress)
    print(f"preprocess: {summary.records} records; graphs {summary.graphs_built} built, {summary.graphs_cached} "
          f"cached, {summary.graphs_rejected} rejected; embeddings {summary.embeddings_encoded} encoded, "
          f"{summary.embeddings_cached} cached ({summary.texts_missing} records without text); "
          f"{summary.seconds:.1f} s")
    return 0
