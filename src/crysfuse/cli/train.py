"""``crysfuse train``: train one model into a run directory."""

from __future__ import annotations

import argparse

from crysfuse.cli.args import config_from_args
from crysfuse.config import PRESETS, TRAIN_FLAGS, Config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    presets = "\n".join(f"  {name:10s} {preset.description}" for name, preset in PRESETS.items())
    parser = subparsers.add_parser("train", help="train a model; writes a run directory",
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=f"presets (--preset NAME, applied over --config, under flags and --set):"
                                          f"\n{presets}")
    parser.add_argument("--preset", choices=list(PRESETS),
                        help="named model and training size: " + ", ".join(PRESETS) + " (see below)")
    parser.add_argument("--data", help="JARVIS-style JSON(.gz) or CGCNN folder")
    parser.add_argument("--target", help="target key, e.g. 'gap pbe' or e_form (optional for a CGCNN folder "
                                         "whose headerless id_prop.csv has one value column)")
    parser.add_argument("--fusion", help="fusion variant (see `crysfuse models`)")
    parser.add_argument("--run-dir", help="output directory")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--limit", type=int, help="use only the first N records of the source")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--split-file", help='JSON {"train": [ids], "val": [...], "test": [...]}')
    parser.add_argument("--text-file", help="descriptions joined by id (JSONL {id,text} or CSV id,text)")
    parser.add_argument("--cache-dir", help="cache of graphs, descriptions and embeddings")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in --run-dir (re-running the same command does too)")
    parser.add_argument("--config", help="YAML/JSON config file (flags and --set override it)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set model.dim_hidden=128 (repeatable)")
    parser.set_defaults(func=run)


def train_config(args: argparse.Namespace) -> Config:
    """Config file (or defaults) ← ``--preset`` ← flags (:data:`crysfuse.config.TRAIN_FLAGS`) ← ``--set``
    overrides."""
    return config_from_args(args, TRAIN_FLAGS)


def run(args: argparse.Namespace) -> int:
    from crysfuse.api import train
    from crysfuse.data.sources import with_default_target

    config = with_default_target(train_config(args))
    if not config.data.path or not config.data.target:
        raise SystemExit("crysfuse train: --data and --target are required (or set them in --config)")
    result = train(config, resume=True if args.resume else None)
    print(f"run directory: {result.run_dir}")
    print(f"val MAE {result.summary['val_mae']:.4f}  test MAE {result.summary['test_mae']:.4f}")
    return 0
