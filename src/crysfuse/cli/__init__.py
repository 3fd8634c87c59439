"""The ``crysfuse`` command: one sub-command per module, each ``add_parser(subparsers)`` + ``run(args)``.

A sub-command parses its arguments and calls library functions, nothing more. Its ``run`` imports the library
when it runs (deferred on purpose): building the parser, ``crysfuse --help`` and ``--version`` must not pay for
importing torch, Lightning, pymatgen and transformers.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from crysfuse import __version__
from crysfuse.allocator import limit_onednn_primitive_cache, tune_allocator_if_asked
from crysfuse.cli import (
    compare,
    config,
    data,
    demo,
    diagnose,
    explain,
    models,
    predict,
    preprocess,
    report,
    robustness,
    train,
)

COMMANDS = {
    "train": train, "predict": predict, "models": models, "robustness": robustness, "demo": demo, "data": data,
    "diagnose": diagnose, "explain": explain, "compare": compare, "report": report, "config": config,
    "preprocess": preprocess,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crysfuse", description="Crystal graph + text fusion models.")
    parser.add_argument("--version", action="version", version=f"crysfuse {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crysfuse`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    # Before any tensor exists, with CRYSFUSE_MALLOC=tuned: reuse freed tensor buffers instead of
    # page-faulting them in every step (crysfuse.allocator, docs/benchmarks.md).
    tune_allocator_if_asked()
    # Before the first bf16 matmul: oneDNN would otherwise cache a primitive per batch shape (crysfuse.allocator).
    limit_onednn_primitive_cache()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Lightning installs its own console handler; keep its messages from being printed twice.
    logging.getLogger("lightning.pytorch").propagate = False
    from crysfuse.errors import USER_ERRORS  # deferred: it imports the library (see the module docstring)

    try:
        return int(COMMANDS[args.command].run(args) or 0)
    except USER_ERRORS as err:
        logging.getLogger("crysfuse").error("%s", err)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
