"""``crysfuse report``: a self-contained HTML page for a run or a comparison directory."""

from __future__ import annotations

import argparse
import logging


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="one self-contained HTML page for a run or comparison")
    parser.add_argument("directory", help="a run directory or a `crysfuse compare` output directory")
    parser.add_argument("--out", required=True, help="HTML file to write")
    parser.add_argument("--explain", type=int, default=3, metavar="N",
                        help="attention maps of the first N test crystals for a model with attention (0: off; "
                             "`crysfuse explain --out RUN/explain` output in the run is shown instead)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crysfuse.analysis.report import write_report

    try:
        path = write_report(args.directory, args.out, explain_crystals=max(args.explain, 0))
    except ValueError as err:
        logging.getLogger("crysfuse").error("%s", err)
        return 2
    print(f"wrote {path}")
    return 0
