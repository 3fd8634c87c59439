"""Crystal graphs for records, through an on-disk cache keyed by a hash of the structure and the graph settings.

Entries are safetensors files written atomically; an entry that fails to load or validate (truncated,
corrupted) is removed and rebuilt, never trusted. :func:`build_graphs` is the one routine that makes the graphs
of many records, for the in-memory items, the lazy items and ``crysfuse preprocess`` alike.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from crysfuse.chemistry import UnknownElementError, check_elements
from crysfuse.config import Config
from crysfuse.data.graphs import CrystalGraph, GraphBuildError, GraphSettings, build_crystal_graph
from crysfuse.data.records import Rejection, StructureRecord
from crysfuse.io import write_bytes_atomic

logger = logging.getLogger(__name__)

GRAPH_CACHE_VERSION = "2"  # 2: line graph ordered by e2 (aggregation target)


def _settings_text(settings: GraphSettings) -> str:
    """The graph settings as hashed into cache keys. ``neighbor_rule`` is left out at its default (``jarvis``),
    so graphs cached before the setting existed keep their keys."""
    items = asdict(settings)
    if items.get("neighbor_rule") == "jarvis":
        del items["neighbor_rule"]
    return f"graph-v{GRAPH_CACHE_VERSION}|{sorted(items.items())}"


def structure_key(structure: Structure, settings: GraphSettings) -> str:
    """sha256 over lattice, species, fractional coordinates and graph settings."""
    digest = hashlib.sha256()
    digest.update(_settings_text(settings).encode())
    digest.update(np.ascontiguousarray(structure.lattice.matrix, dtype=np.float64).tobytes())
    digest.update(np.asarray(structure.atomic_numbers, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(structure.frac_coords, dtype=np.float64).tobytes())
    return digest.hexdigest()


def record_key(record: StructureRecord, settings: GraphSettings) -> str:
    """:func:`structure_key` of the record's structure, from its key data when the reader gave them (the
    same bytes, see :mod:`~crysfuse.data.verdicts`), so an unparsed structure stays unparsed."""
    if record.key_data is None:
        return structure_key(record.structure, settings)
    digest = hashlib.sha256(_settings_text(settings).encode())
    digest.update(record.key_data)
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


def default_cache_dir(config: Config) -> Path:
    """``data.cache_dir``, else ``$CRYSFUSE_CACHE``, else ``~/.cache/crysfuse``."""
    if config.data.cache_dir:
        return Path(config.data.cache_dir)
    return Path(os.environ.get("CRYSFUSE_CACHE", Path.home() / ".cache" / "crysfuse"))


def graph_settings(config: Config) -> GraphSettings:
    """The graph section of the config as :class:`GraphSettings`."""
    return GraphSettings(
        cutoff=config.graph.cutoff, max_neighbors=config.graph.max_neighbors, max_atoms=config.graph.max_atoms,
        neighbor_rule=config.graph.neighbor_rule,
    )


# ------------------------------------------------------------------------------------- graphs of many records


@dataclass
class GraphsReady:
    """What :func:`build_graphs` made: the cache key of every record that has a graph (in record order), the
    graphs themselves (with ``keep=True``), the rejections (stage ``graph``, in record order) and counts."""

    keys: dict[str, str] = field(default_factory=dict)
    graphs: dict[str, CrystalGraph] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    built: int = 0
    cached: int = 0


def build_graph(structure: Structure, settings: GraphSettings) -> tuple[CrystalGraph | None, str | None]:
    """``(graph, None)``, or ``(None, reason)`` for a structure that cannot have a graph."""
    try:
        return build_crystal_graph(structure, settings), None
    except (GraphBuildError, UnknownElementError) as err:
        return None, str(err)


def _store_chunk(cache: GraphCache, settings: GraphSettings, chunk: list[tuple[str, str, Structure]]
                 ) -> list[tuple[str, str | None]]:
    """Build and store the graphs of ``(id, key, structure)``; returns ``(id, error or None)``."""
    out: list[tuple[str, str | None]] = []
    for record_id, key, structure in chunk:
        graph, error = build_graph(structure, settings)
        if graph is not None:
            cache.put(key, graph)
        out.append((record_id, error))
    return out


def _worker_chunk(cache_root: str, settings: GraphSettings, chunk: list[tuple[str, str, Structure]]
                  ) -> list[tuple[str, str | None]]:
    """Worker process: :func:`_store_chunk` with one torch thread (the processes share the cores)."""
    torch.set_num_threads(1)
    return _store_chunk(GraphCache(cache_root), settings, chunk)


def build_graphs(
    records: Sequence[StructureRecord],
    settings: GraphSettings,
    cache: GraphCache | None,
    *,
    keep: bool = True,
    trust_present: bool = False,
    workers: int | None = None,
    chunk_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> GraphsReady:
    """Make sure every record has a graph: read it from ``cache`` or build it (and store it).

    Args:
        keep: Return the graphs (the in-memory items); otherwise only make sure the cache holds them.
        trust_present: Count a cache entry as there when its file exists (lazy items validate it when they
            load it; not with ``keep``); otherwise entries are loaded, and a damaged one is rebuilt.
        workers: ``None`` builds in this process, record by record. A number builds in chunks of
            ``chunk_size`` in that many worker processes (1: in this process) that write straight into the
            cache (needed; not with ``keep``); unknown elements are rejected before a chunk is sent.
        progress: Called with 1 for every record that is done (a progress bar's ``update``).
    """
    if (keep and (trust_present or workers is not None)) or (cache is None and (trust_present or workers)):
        raise ValueError("keep needs loaded graphs built here; trust_present and workers need a cache")
    ready, failed = GraphsReady(), {}
    todo: list[tuple[str, str, StructureRecord]] = []
    for record in records:
        key = record_key(record, settings)
        if cache is not None and trust_present:
            graph, present = None, cache.path(key).is_file()
        else:
            graph = cache.get(key) if cache is not None else None
            present = graph is not None
        reason = _unknown_element(record.structure) if workers is not None and not present else None
        if present or reason is not None:
            if present:
                ready.cached += 1
                ready.keys[record.id] = key
            else:
                failed[record.id] = reason  # cheap, before sending it to a worker
            if keep and graph is not None:
                ready.graphs[record.id] = graph
            _tick(progress)
        else:
            todo.append((record.id, key, record))
    if workers is None:
        _build_here(todo, settings, cache, ready, failed, keep=keep, progress=progress)
    else:
        _build_in_chunks(todo, settings, cache, ready, failed, workers=workers, chunk_size=chunk_size,
                         progress=progress)
    order = {record.id: position for position, record in enumerate(records)}
    ready.keys = dict(sorted(ready.keys.items(), key=lambda kv: order[kv[0]]))
    ready.rejections = [Rejection(i, "graph", failed[i]) for i in sorted(failed, key=order.__getitem__)]
    return ready


def _tick(progress: Callable[[int], None] | None) -> None:
    if progress is not None:
        progress(1)


def _unknown_element(structure: Structure) -> str | None:
    try:
        check_elements(structure.atomic_numbers)
    except UnknownElementError as err:
        return str(err)
    return None


def _build_here(todo: list[tuple[str, str, StructureRecord]], settings: GraphSettings, cache: GraphCache | None,
                ready: GraphsReady, failed: dict[str, str], *, keep: bool,
                progress: Callable[[int], None] | None) -> None:
    for record_id, key, record in todo:
        graph, error = build_graph(record.structure, settings)
        if graph is None:
            failed[record_id] = str(error)
        else:
            ready.built += 1
            ready.keys[record_id] = key
            if cache is not None:
                cache.put(key, graph)
            if keep:
                ready.graphs[record_id] = graph
        _tick(progress)


def _build_in_chunks(todo: list[tuple[str, str, StructureRecord]], settings: GraphSettings, cache: GraphCache,
                     ready: GraphsReady, failed: dict[str, str], *, workers: int, chunk_size: int,
                     progress: Callable[[int], None] | None) -> None:
    chunks = [[(i, key, record.structure) for i, key, record in todo[start:start + chunk_size]]
              for start in range(0, len(todo), chunk_size)]
    keys = {record_id: key for record_id, key, _ in todo}

    def collect(result: list[tuple[str, str | None]]) -> None:
        for record_id, error in result:
            if error is None:
                ready.built += 1
                ready.keys[record_id] = keys[record_id]
            else:
                failed[record_id] = error
            _tick(progress)

    if chunks and workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_worker_chunk, str(cache.root.parent), settings, chunk) for chunk in chunks]
            for future in futures:
                collect(future.result())
    else:
        for chunk in chunks:
            collect(_store_chunk(cache, settings, chunk))
