"""Warm start: the structure checks a record passed, remembered in the cache folder, so that a later read of
the same source does not parse the structures at all.

A JARVIS ``atoms`` dict is summarised without pymatgen as *key data*: the bytes of its lattice (float64),
atomic numbers (int64) and fractional coordinates (float64) — exactly the bytes
:func:`crysfuse.data.cache.structure_key` hashes for the parsed structure, so the graph cache key follows from
the raw dict too. A record whose key data is in the :class:`CheckedStore` parsed and passed every load-time
check before (the store only learns key data that was proved equal to its parsed structure's); it is kept
with a lazily parsed structure. Every other record is parsed and checked as always, so rejections do not
change.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure
from pymatgen.core.periodic_table import Element

from crysfuse.data.structures import MAX_NEIGHBOR_DISTANCE
from crysfuse.io import write_text_atomic

logger = logging.getLogger(__name__)

CHECKS_VERSION = "1"
WARM_START_ENV = "CRYSFUSE_WARM_START"
"""``0`` turns the warm start off (every structure parsed and checked, as before it existed)."""


def warm_start_enabled() -> bool:
    return os.environ.get(WARM_START_ENV, "1") != "0"


_NUMBERS: dict[str, int | None] = {}


def _atomic_number(symbol: str) -> int | None:
    """``Element(symbol).Z`` (what pymatgen makes of a symbol), or ``None`` for anything else."""
    if symbol not in _NUMBERS:
        try:
            _NUMBERS[symbol] = int(Element(symbol).Z) if isinstance(symbol, str) else None
        except (ValueError, KeyError, AttributeError):
            _NUMBERS[symbol] = None
    return _NUMBERS[symbol]


def jarvis_key_data(atoms: Any) -> bytes | None:
    """Lattice, atomic numbers and fractional coordinates of a JARVIS ``atoms`` dict as the bytes
    :func:`structure_key_data` gives for its parsed structure; ``None`` for any dict off the plain path
    (cartesian coordinates, unknown symbols, ragged or empty lists...), which is then parsed as usual."""
    if not isinstance(atoms, dict) or atoms.get("cartesian") is not False or "props" not in atoms:
        return None
    elements, coords, lattice = atoms.get("elements"), atoms.get("coords"), atoms.get("lattice_mat")
    if not isinstance(elements, list) or not isinstance(coords, list) or not elements or len(elements) != len(coords):
        return None
    try:
        numbers = [_NUMBERS[e] if e in _NUMBERS else _atomic_number(e) for e in elements]
        if None in numbers:
            return None
        lattice_arr = np.asarray(lattice, dtype=np.float64)
        frac = np.asarray(coords, dtype=np.float64)
    except (TypeError, ValueError):  # unhashable symbols, ragged or non-numeric lists
        return None
    if lattice_arr.shape != (3, 3) or frac.shape != (len(elements), 3):
        return None
    return lattice_arr.tobytes() + np.asarray(numbers, dtype=np.int64).tobytes() + frac.tobytes()


def structure_key_data(structure: Structure) -> bytes:
    """The bytes :func:`crysfuse.data.cache.structure_key` hashes (after its settings prefix)."""
    return (np.ascontiguousarray(structure.lattice.matrix, dtype=np.float64).tobytes()
            + np.asarray(structure.atomic_numbers, dtype=np.int64).tobytes()
            + np.ascontiguousarray(structure.frac_coords, dtype=np.float64).tobytes())


def checks_key(key_data: bytes) -> str:
    """The store's key of one structure (the checks' version and neighbour distance included)."""
    digest = hashlib.sha256(f"checks-v{CHECKS_VERSION}|{MAX_NEIGHBOR_DISTANCE!r}|".encode())
    digest.update(key_data)
    return digest.hexdigest()


class CheckedStore:
    """``<cache>/checked-v1.txt``: one :func:`checks_key` per line for every structure that passed the
    load-time checks (parsed, no isolated atom)."""

    def __init__(self, root: str | Path) -> None:
        self.path = Path(root) / f"checked-v{CHECKS_VERSION}.txt"
        self._keys: set[str] | None = None
        self._new: set[str] = set()

    @property
    def keys(self) -> set[str]:
        if self._keys is None:
            try:
                self._keys = set(self.path.read_text(encoding="ascii").split())
            except (OSError, UnicodeDecodeError):
                self._keys = set()
        return self._keys

    def __contains__(self, key: str) -> bool:
        return key in self.keys

    def add(self, key_data: bytes) -> None:
        """Remember a structure that passed the checks (its key data proved equal to its parsed structure's)."""
        key = checks_key(key_data)
        if key not in self.keys:
            self.keys.add(key)
            self._new.add(key)

    def save(self) -> None:
        """Write the store if it learnt something (merged with what another process wrote meanwhile)."""
        if not self._new:
            return
        try:
            on_disk = set(self.path.read_text(encoding="ascii").split()) if self.path.exists() else set()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.path, "".join(f"{k}\n" for k in sorted(on_disk | self.keys)))
            self._new.clear()
        except OSError as err:  # a read-only cache only costs the next start its checks
            logger.warning("cannot write %s (%s); the next start checks the structures again", self.path, err)
