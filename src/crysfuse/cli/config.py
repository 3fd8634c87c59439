"""``crysfuse config``: the configuration reference (Markdown) or a resolved config (YAML)."""

from __future__ import annotations

import argparse

import yaml


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="print the config reference or a resolved config")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--reference", action="store_true",
                      help="print the Markdown reference of every config key (docs/configuration.md)")
    what.add_argument("--show", action="store_true",
                      help="print the resolved config (defaults <- --config <- --set) as YAML")
    parser.add_argument("--config", help="YAML/JSON config file to start from (with --show)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.epochs=5 (repeatable; with --show)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.reference:
        if args.config or args.set:
            raise SystemExit("crysfuse config: --config and --set go with --show, not --reference")
        from crysfuse.config_reference import render_reference

        print(render_reference(), end="")
        return 0
    from crysfuse.config import Config

    config = Config.load(args.config) if args.config else Config()
    if args.set:
        config = config.with_overrides(list(args.set))
    print(yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True), end="")
    return 0
