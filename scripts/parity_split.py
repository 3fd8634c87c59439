"""Write the parity slice of the canonical mp36k split: the first N train / val / test ids, in order.

The reference ALIGNN (``train_alignn.py`` with ``keep_data_order``) and crysfuse read the same slice, so both
sides train, select and test on exactly the same crystals (docs/parity.md)::

    python scripts/parity_split.py --train 3000 --val 500 --test 1000 --out configs/parity/mp36k_3000.split.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CANONICAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mp36k.split.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, default=CANONICAL, help="the canonical split file")
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    canonical = json.loads(args.split.read_text(encoding="utf-8"))
    sizes = {"train": args.train, "val": args.val, "test": args.test}
    sliced = {name: canonical[name][:size] for name, size in sizes.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(sliced) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
