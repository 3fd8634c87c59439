"""Train/validation/test splits: seeded fractions, or read from a split file."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from crysfuse.config import Config

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
    n_val = round(fractions[1] * n)
    n_test = round(fractions[2] * n)
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


def seeded_subset(ids: list[str], size: int | None, seed: int) -> list[str]:
    """A seeded subset of ``size`` ids, in their original order (all of them when ``size`` is ``None`` or
    not smaller than the list)."""
    if size is None or size >= len(ids):
        return list(ids)
    if size < 1:
        raise SplitError(f"a split subset must hold at least 1 id, got {size}")
    chosen = np.sort(np.random.default_rng(seed).choice(len(ids), size=size, replace=False))
    return [ids[i] for i in chosen]


def cut_split(
    parts: dict[str, list[str]], train: int | None, val: int | None, seed: int
) -> dict[str, list[str]]:
    """``parts`` with train and val cut to seeded subsets of ``train`` and ``val`` ids (test untouched)."""
    return {**parts, "train": seeded_subset(parts["train"], train, seed),
            "val": seeded_subset(parts["val"], val, seed)}


def read_split_file(path: str | Path) -> dict[str, list[str]]:
    """``{"train": [...], "val": [...], "test": [...]}`` as stored (ids as strings)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise SplitError(f"split file '{path}' cannot be read: {err}") from err
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in SPLIT_NAMES):
        raise SplitError(f"split file '{path}' must hold lists 'train', 'val' and 'test'")
    return {name: [str(i) for i in data[name]] for name in SPLIT_NAMES}


def split_from_file(path: str | Path, ids: list[str], *, cut: Callable[[dict], dict] | None = None) -> Split:
    """Read a split file (see :func:`read_split_file`), apply ``cut`` (e.g. seeded subsets, see
    :func:`config_cut`) and keep the ids present in ``ids``."""
    path = Path(path)
    data = read_split_file(path)
    if cut is not None:
        data = cut(data)
    available = set(ids)
    parts: dict[str, list[str]] = {}
    missing: dict[str, int] = {}
    for name in SPLIT_NAMES:
        named = data[name]
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


def config_cut(config: Config) -> Callable[[dict], dict]:
    """The seeded train/val subsets of ``config.data`` as a function of the split's parts."""
    data = config.data
    return lambda parts: cut_split(parts, data.train_subset, data.val_subset, data.split_seed)


def make_split(config: Config, ids: list[str]) -> Split:
    """The split of a run: its split file when given, else a seeded split of ``ids``; then the configured
    train/val subsets."""
    cut = config_cut(config)
    if config.data.split_file:
        return split_from_file(config.data.split_file, ids, cut=cut)
    split = seeded_split(ids, config.data.split_fractions, config.data.split_seed)
    parts = cut(split.to_dict())
    return Split(parts["train"], parts["val"], parts["test"], split.missing)


def split_ids(config: Config) -> set[str] | None:
    """The ids a run with ``config`` can use: those of its split file (after the configured subsets), or
    ``None`` (every record) without a split file."""
    if not config.data.split_file:
        return None
    parts = config_cut(config)(read_split_file(config.data.split_file))
    return {i for name in SPLIT_NAMES for i in parts[name]}
