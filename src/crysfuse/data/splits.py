"""Train/validation/test splits: seeded fractions, or read from a split file."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


class SplitError(ValueError):
    """A split file or fraction setting cannot be used."""


@dataclass
class Split:
    """Record ids per split, plus ids that a split file named but the data lacks."""

    train: list[str]
    val: list[str]
    test: list[str]
    missing: dict[str, int]

    def to_dict(self) -> dict[str, list[str]]:
        return {"train": self.train, "val": self.val, "test": self.test}


def seeded_split(ids: list[str], fractions: tuple[float, float, float], seed: int) -> Split:
    """Shuffle ``ids`` (sorted first, so the order of the source does not matter) with ``seed`` and cut.

    Val and test get ``round(fraction * n)`` ids each (at least one each when ``n >= 3``); train the rest.
    """
    if any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise SplitError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    order = sorted(ids)
    rng = np.random.default_rng(seed)
    shuffled = [order[i] for i in rng.permutation(len(order))]
    n = len(shuffled)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    if n >= 3:
        n_val = max(n_val, 1) if fractions[1] > 0 else 0
        n_test = max(n_test, 1) if fractions[2] > 0 else 0
    n_train = n - n_val - n_test
    if n_train < 1:
        raise SplitError(f"{n} records are too few for a train/val/test split")
    return Split(
        train=shuffled[:n_train],
        val=shuffled[n_train : n_train + n_val],
        test=shuffled[n_train + n_val :],
        missing={},
    )


def split_from_file(path: str | Path, ids: list[str]) -> Split:
    """Read ``{"train": [...], "val": [...], "test": [...]}`` and keep the ids present in ``ids``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise SplitError(f"split file '{path}' cannot be read: {err}") from err
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in SPLIT_NAMES):
        raise SplitError(f"split file '{path}' must hold lists 'train', 'val' and 'test'")
    available = set(ids)
    parts: dict[str, list[str]] = {}
    missing: dict[str, int] = {}
    for name in SPLIT_NAMES:
        named = [str(i) for i in data[name]]
        parts[name] = [i for i in named if i in available]
        missing[name] = len(named) - len(parts[name])
    overlap = (set(parts["train"]) & set(parts["val"])) | (set(parts["train"]) & set(parts["test"]))
    overlap |= set(parts["val"]) & set(parts["test"])
    if overlap:
        raise SplitError(f"split file '{path}' puts {len(overlap)} ids in more than one split")
    if not parts["train"] or not parts["val"]:
        raise SplitError(f"split file '{path}' leaves no train or val records among the loaded data")
    unassigned = len(available) - sum(len(p) for p in parts.values())
    if any(missing.values()) or unassigned:
        logger.info(
            "split file %s: %s ids not in the loaded data (per split); %d loaded records in no split",
            path, missing, unassigned,
        )
    return Split(parts["train"], parts["val"], parts["test"], missing)
