"""Element data shared by the data layer (graphs check elements) and the model (atom embeddings): the CGCNN
atom features (92-d one-hot blocks), as used by ALIGNN (``atom_features="cgcnn"``).

The table is read lazily from the file jarvis-tools ships, ``jarvis/core/atom_init.json`` (keys ``"1"`` to
``"100"``, one 92-long 0/1 vector each), the same file ``jarvis.core.specie.get_node_attributes`` reads.
Nothing is read at import time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

import torch

__all__ = ["DIM_ATOM_FEATURES", "UnknownElementError", "cgcnn_feature_table", "check_elements"]

logger = logging.getLogger(__name__)

DIM_ATOM_FEATURES = 92
"""Width of a CGCNN atom feature vector."""


class UnknownElementError(ValueError):
    """An atomic number has no row in the CGCNN feature table (ALIGNN cannot featurise it)."""


def _element_symbol(z: int) -> str:
    """Element symbol for ``z``, or ``"Z=<z>"`` where pymatgen does not know it."""
    try:  # deferred: pymatgen is heavy to import and only this error message needs it (the model imports us)
        from pymatgen.core.periodic_table import Element

        return Element.from_Z(z).symbol
    except (ValueError, KeyError, ImportError):
        return f"Z={z}"


@lru_cache(maxsize=1)
def _load_atom_init() -> dict[int, list[float]]:
    """Parse ``jarvis/core/atom_init.json`` into ``{Z: features}``."""
    path = resources.files("jarvis.core").joinpath("atom_init.json")
    with path.open("r", encoding="utf-8") as fh:
        raw = json.load(fh)
    table = {int(k): [float(x) for x in v] for k, v in raw.items()}
    bad = {z: len(v) for z, v in table.items() if len(v) != DIM_ATOM_FEATURES}
    if bad:
        raise RuntimeError(f"jarvis atom_init.json has rows of unexpected width: {bad}")
    logger.debug("loaded CGCNN features for %d elements from %s", len(table), path)
    return table


@lru_cache(maxsize=1)
def _cgcnn_table_cached() -> torch.Tensor:
    table = _load_atom_init()
    z_max = max(table)
    out = torch.full((z_max + 1, DIM_ATOM_FEATURES), float("nan"), dtype=torch.float32)
    for z, feats in table.items():
        out[z] = torch.tensor(feats, dtype=torch.float32)
    return out


def cgcnn_feature_table() -> torch.Tensor:
    """CGCNN feature table indexed by atomic number.

    Returns:
        Tensor ``[Zmax + 1, 92]`` float32 (``Zmax`` = 100 for the shipped file). Row ``Z`` holds the features
        of element ``Z``; rows of elements absent from the file (row 0 at least) are NaN, so a lookup
        that slipped past :func:`check_elements` poisons the forward pass visibly instead of silently.
        A fresh copy is returned each call, so callers may modify it.
    """
    return _cgcnn_table_cached().clone()


@lru_cache(maxsize=1)
def _known_atomic_numbers() -> frozenset[int]:
    return frozenset(_load_atom_init())


def check_elements(atomic_numbers: Iterable[int] | torch.Tensor) -> None:
    """Check that every atomic number has a CGCNN feature row.

    Args:
        atomic_numbers: ``[N]`` integers (tensor, array or any iterable).

    Raises:
        UnknownElementError: naming the element symbol(s) missing from the table.
    """
    if isinstance(atomic_numbers, torch.Tensor):
        values = atomic_numbers.reshape(-1).tolist()
    else:
        values = [int(z) for z in atomic_numbers]
    known = _known_atomic_numbers()
    missing = sorted({int(z) for z in values} - known)
    if missing:
        names = ", ".join(_element_symbol(z) for z in missing)
        raise UnknownElementError(
            f"element(s) {names} have no CGCNN atom features (the jarvis atom_init.json table covers "
            f"Z = {min(known)}..{max(known)})"
        )
