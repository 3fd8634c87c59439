"""On-disk cache of crystal graphs, keyed by a hash of the structure and the graph settings.

Entries are safetensors files written atomically; an entry that fails to load or validate (truncated,
corrupted) is removed and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
from pymatgen.core import Structure
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from crysfuse.data.graphs import CrystalGraph, GraphSettings
from crysfuse.io import write_bytes_atomic

logger = logging.getLogger(__name__)

GRAPH_CACHE_VERSION = "2"  # 2: line graph ordered by e2 (aggregation target)


def structure_key(structure: Structure, settings: GraphSettings) -> str:
    """sha256 over lattice, species, fractional coordinates and graph settings."""
    digest = hashlib.sha256()
    digest.update(f"graph-v{GRAPH_CACHE_VERSION}|{sorted(asdict(settings).items())}".encode())
    digest.update(np.ascontiguousarray(structure.lattice.matrix, dtype=np.float64).tobytes())
    digest.update(np.asarray(structure.atomic_numbers, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(structure.frac_coords, dtype=np.float64).tobytes())
    return digest.hexdigest()


class GraphCache:
    """``root/graphs/<key[:2]>/<key>.safetensors``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "graphs"

    def path(self, key: str) -> Path:
        """File that holds (or would hold) the graph of ``key``."""
        return self.root / key[:2] / f"{key}.safetensors"

    _path = path

    def get(self, key: str) -> CrystalGraph | None:
        """The cached graph, or ``None`` on a miss or an unreadable entry (which is deleted)."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            return CrystalGraph.from_tensors(load_file(path))
        except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as err:
            logger.warning("graph cache entry %s is unreadable (%s); rebuilding it", path.name, err)
            path.unlink(missing_ok=True)
            return None

    def put(self, key: str, graph: CrystalGraph) -> None:
        tensors = {name: t.contiguous() for name, t in graph.to_tensors().items()}
        write_bytes_atomic(self._path(key), save(tensors))
