"""Gzip the per-crystal predictions of finished runs for committing: ``predictions_<split>.csv`` →
``predictions_<split>.csv.gz`` beside it (byte-reproducible: no file name or time stamp in the header), for
every run directory with a ``summary.json`` under the given folders. ``crysfuse compare`` and the comparison
code read the ``.gz`` file when the plain one is absent (a fresh clone: the plain files are not committed)::

    python scripts/compress_predictions.py docs/results/study
"""

from __future__ import annotations

import argparse
import gzip
import logging
from pathlib import Path

logger = logging.getLogger("compress_predictions")


def compress(csv_path: Path) -> bool:
    """Write ``<csv_path>.gz`` when it is missing or holds other content; returns whether it was written."""
    target = csv_path.with_name(csv_path.name + ".gz")
    data = csv_path.read_bytes()
    if target.is_file() and gzip.decompress(target.read_bytes()) == data:
        return False
    with open(target, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as handle:
        handle.write(data)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="folders searched for finished run directories")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    written = 0
    for root in args.roots:
        for summary in sorted(root.rglob("summary.json")):
            written += sum(compress(path) for path in sorted(summary.parent.glob("predictions_*.csv")))
    logger.info("%d prediction files compressed", written)


if __name__ == "__main__":
    main()
