"""Scale: ``crysfuse preprocess`` fills the on-disk caches in parallel; training reads them lazily.

* :func:`preprocess` builds the graphs of a data source in worker processes (chunked
  :class:`~concurrent.futures.ProcessPoolExecutor`; each worker writes its graphs straight into the
  :class:`~crysfuse.data.cache.GraphCache`), resolves the texts (record text, ``data.text_file``, else the
  describer with its workers) and encodes the embeddings in chunks into the
  :class:`~crysfuse.text.cache.EmbeddingCache`, with a progress bar. Nothing is kept in memory beyond one
  chunk. Existing entries are validated (loaded) and skipped, so a re-run is incremental; a damaged or
  truncated entry fails validation, is removed and rebuilt. A small ``preprocess.json`` manifest records the
  counts and timings.
* :class:`LazyItems` is the read side: a ``Mapping[id, CrystalData]`` whose values are loaded from the two
  caches on access (small LRU), and :class:`ItemList` a lazily indexed torch ``Dataset`` over some of its ids,
  so training on the full data never holds all token embeddings in memory.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from crysfuse.config import Config
from crysfuse.data.dataset import CrystalData, make_crystal_data

logger = logging.getLogger(__name__)

MANIFEST = "preprocess.json"


# ----------------------------------------------------------------------------------------- read side


@dataclass
class LazyEntry:
    """Where one item lives: graph cache key, text (``None``: no text side or missing), target, position."""

    graph_key: str
    text: str | None
    target: float
    index: int


class LazyItems(Mapping):
    """``id → CrystalData`` loaded on access from the graph and embedding caches (LRU of ``lru`` items).

    A cache entry that disappeared or got damaged since :func:`~crysfuse.data.pipeline.prepare` checked it is
    rebuilt on access (graph from ``structures``, embedding with ``text_side``) — never trusted.
    """

    def __init__(self, entries: dict[str, LazyEntry], graph_cache: Any, *, text_side: Any = None,
                 dim_text: int = 0, structures: dict[str, Any] | None = None, settings: Any = None,
                 lru: int = 512) -> None:
        self.entries = entries
        self.graph_cache = graph_cache
        self.text_side = text_side
        self.dim_text = dim_text
        self.structures = structures or {}
        self.settings = settings
        self.lru = lru
        self._recent: OrderedDict[str, CrystalData] = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __getitem__(self, record_id: str) -> CrystalData:
        hit = self._recent.get(record_id)
        if hit is not None:
            self._recent.move_to_end(record_id)
            return hit
        item = self._load(record_id, self.entries[record_id])
        self._recent[record_id] = item
        if len(self._recent) > self.lru:
            self._recent.popitem(last=False)
        return item

    def target(self, record_id: str) -> float:
        return self.entries[record_id].target

    def _load(self, record_id: str, entry: LazyEntry) -> CrystalData:
        graph = self.graph_cache.get(entry.graph_key)
        if graph is None:
            from crysfuse.data.graphs import build_crystal_graph

            logger.warning("graph of %s missing from the cache; rebuilding it", record_id)
            graph = build_crystal_graph(self.structures[record_id], self.settings)
            self.graph_cache.put(entry.graph_key, graph)
        if self.text_side is None:
            tokens, pooled = torch.zeros(0, 1, dtype=torch.float16), torch.zeros(1, dtype=torch.float16)
        else:
            encoded = self.text_side.cache.get(entry.text)
            if encoded is None:
                encoded = self.text_side.encode([entry.text])[0]
            tokens, pooled = encoded.tokens, encoded.pooled
        return make_crystal_data(graph, tokens=tokens, pooled=pooled, target=entry.target, index=entry.index)


class ItemList(Dataset, Sequence):
    """A lazily indexed dataset: ``items[ids[k]]`` on access (works with :func:`make_loader`)."""

    def __init__(self, items: Mapping[str, CrystalData], ids: Sequence[str]) -> None:
        self.items = items
        self.ids = list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return ItemList(self.items, self.ids[k])
        return self.items[self.ids[k]]

    def __iter__(self) -> Iterator[CrystalData]:
        for i in self.ids:
            yield self.items[i]


def item_targets(items: Sequence[CrystalData]) -> list[float]:
    """The targets of ``items`` — read from the index (no item loaded) for an :class:`ItemList`."""
    if isinstance(items, ItemList) and isinstance(items.items, LazyItems):
        return [items.items.target(i) for i in items.ids]
    return [float(d.y) for d in items]


def item_list(items: Mapping[str, CrystalData], ids: Sequence[str]) -> Sequence[CrystalData]:
    """``[items[i] for i in ids]`` — a plain list for in-memory items, a lazy :class:`ItemList` otherwise."""
    if isinstance(items, LazyItems):
        return ItemList(items, ids)
    return [items[i] for i in ids]


# ---------------------------------------------------------------------------------------- write side


def _progress(total: int, desc: str, enabled: bool) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with transformers
        enabled = False
    if not enabled:
        class _Null:
            def update(self, n: int = 1) -> None: ...
            def close(self) -> None: ...
        return _Null()
    return tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True, mininterval=1.0)


def _build_chunk(cache_root: str, settings: Any, chunk: list[tuple[str, str, Any]]) -> list[tuple[str, str | None]]:
    """Worker: build and store the graphs of ``(id, key, structure)``; returns ``(id, error or None)``."""
    from crysfuse.data.atom_features import UnknownElementError
    from crysfuse.data.cache import GraphCache
    from crysfuse.data.graphs import GraphBuildError, build_crystal_graph

    torch.set_num_threads(1)
    cache = GraphCache(cache_root)
    out: list[tuple[str, str | None]] = []
    for record_id, key, structure in chunk:
        try:
            cache.put(key, build_crystal_graph(structure, settings))
            out.append((record_id, None))
        except (GraphBuildError, UnknownElementError) as err:
            out.append((record_id, str(err)))
    return out


@dataclass
class PreprocessSummary:
    records: int = 0
    graphs_built: int = 0
    graphs_cached: int = 0
    graphs_rejected: int = 0
    texts: int = 0
    texts_missing: int = 0
    embeddings_encoded: int = 0
    embeddings_cached: int = 0
    seconds: float = 0.0
    encoder_id: str | None = None


def preprocess(config: Config, *, workers: int = 2, chunk_size: int = 64, text_chunk: int = 512,
               uses_text: bool = True, progress: bool = True) -> PreprocessSummary:
    """Fill the caches of ``config`` (``data.cache_dir``) for ``data.path``; returns what was done."""
    from crysfuse.data.atom_features import UnknownElementError, check_elements
    from crysfuse.data.cache import GraphCache, structure_key
    from crysfuse.data.pipeline import TextInfo, TextSide, default_cache_dir, graph_settings, resolve_texts
    from crysfuse.data.sources import load_records
    from crysfuse.data.splits import split_ids
    from crysfuse.io import write_json_atomic

    started = time.perf_counter()
    cache_dir = default_cache_dir(config)
    settings = graph_settings(config)
    graph_cache = GraphCache(cache_dir)
    loaded = load_records(config.data.path, config.data.target or None, limit=config.data.limit,
                          require_target=False, ids=split_ids(config))  # labelled or not, within the split
    records = loaded.records
    summary = PreprocessSummary(records=len(records))
    logger.info("preprocess: %d records from %s into %s", len(records), config.data.path, cache_dir)

    # graphs: validate existing entries, build the rest in worker processes
    todo: list[tuple[str, str, Any]] = []
    rejected: dict[str, str] = {}
    bar = _progress(len(records), "graphs", progress)
    for record in records:
        key = structure_key(record.structure, settings)
        if graph_cache.get(key) is not None:
            summary.graphs_cached += 1
            bar.update()
        else:
            try:
                check_elements(record.structure.atomic_numbers)  # cheap, before sending it to a worker
            except UnknownElementError as err:
                rejected[record.id] = str(err)
                bar.update()
                continue
            todo.append((record.id, key, record.structure))
    chunks = [todo[i:i + chunk_size] for i in range(0, len(todo), chunk_size)]
    if chunks and workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_build_chunk, str(cache_dir), settings, chunk) for chunk in chunks]
            for future in futures:
                for record_id, error in future.result():
                    if error is None:
                        summary.graphs_built += 1
                    else:
                        rejected[record_id] = error
                    bar.update()
    else:
        for chunk in chunks:
            for record_id, error in _build_chunk(str(cache_dir), settings, chunk):
                if error is None:
                    summary.graphs_built += 1
                else:
                    rejected[record_id] = error
                bar.update()
    bar.close()
    summary.graphs_rejected = len(rejected)
    logger.info("graphs: %d built, %d from cache, %d rejected",
                summary.graphs_built, summary.graphs_cached, summary.graphs_rejected)
    del todo, chunks

    if uses_text:
        kept = [r for r in records if r.id not in rejected]
        info = TextInfo()
        texts = resolve_texts(kept, config, cache_dir, info)
        summary.texts_missing = info.num_missing
        distinct = list(dict.fromkeys(t for t in texts if t and str(t).strip()))
        summary.texts = len(distinct)
        del texts
        side = TextSide(config, cache_dir)
        summary.encoder_id = side.encoder.model_id
        bar = _progress(len(distinct), "embeddings", progress)
        for start in range(0, len(distinct), text_chunk):
            chunk = distinct[start:start + text_chunk]
            misses = [t for t in chunk if side.cache.get(t) is None]
            summary.embeddings_cached += len(chunk) - len(misses)
            if misses:
                for text, encoded in zip(misses, side.encoder.encode(misses)):
                    side.cache.put(text, encoded)
                summary.embeddings_encoded += len(misses)
            bar.update(len(chunk))
        bar.close()
        logger.info("embeddings: %d encoded, %d from cache", summary.embeddings_encoded, summary.embeddings_cached)

    summary.seconds = round(time.perf_counter() - started, 2)
    manifest = {
        **summary.__dict__,
        "data": str(config.data.path),
        "text_file": config.data.text_file,
        "encoder": config.text.encoder if uses_text else None,
        "max_length": config.text.max_length,
        "graph": settings.__dict__,
        "rejected": rejected,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(Path(cache_dir) / MANIFEST, manifest)
    return summary
