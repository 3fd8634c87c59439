"""Scale: ``crysfuse preprocess`` fills the on-disk caches in parallel; training reads them lazily.

* :func:`preprocess` builds the graphs of a data source in worker processes (chunked
  :class:`~concurrent.futures.ProcessPoolExecutor`; each worker writes its graphs straight into the
  :class:`~crysfuse.data.cache.GraphCache`: :func:`~crysfuse.data.cache.build_graphs`), resolves the texts
  (record text, ``data.text_file``, else the describer with its workers) and encodes the embeddings in chunks
  into the :class:`~crysfuse.text.cache.EmbeddingCache` (:meth:`~crysfuse.data.texts.TextSide.fill_cache`), with
  a progress bar. Nothing is kept in memory beyond one
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from crysfuse.config import Config
from crysfuse.data.cache import GraphCache, build_graphs, default_cache_dir, graph_settings
from crysfuse.data.dataset import CrystalData, make_crystal_data, with_text
from crysfuse.data.graphs import build_crystal_graph
from crysfuse.data.records import StructureRecord
from crysfuse.data.sources import load_config_records
from crysfuse.data.splits import split_ids
from crysfuse.data.texts import TextInfo, TextSide, distinct_texts, resolve_texts
from crysfuse.io import write_json_atomic

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
                 dim_text: int = 0, structures: Mapping[str, Any] | None = None, settings: Any = None,
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
            logger.warning("graph of %s missing from the cache; rebuilding it", record_id)
            graph = build_crystal_graph(self.structures[record_id], self.settings)
            self.graph_cache.put(entry.graph_key, graph)
        if self.text_side is not None and self.text_side.trainable:
            item = make_crystal_data(graph, tokens=torch.zeros(0, 1, dtype=torch.float16),
                                     pooled=torch.zeros(1, dtype=torch.float16), target=entry.target, index=entry.index)
            return with_text(item, self.text_side.text_inputs([entry.text])[0])
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


class _Progress:
    """A tqdm bar, or nothing when switched off; ``update(n)`` either way."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True, mininterval=1.0) if enabled else None

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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
    started = time.perf_counter()
    cache_dir = default_cache_dir(config)
    records = load_config_records(config, require_target=False,  # labelled or not, within the split
                                  ids=split_ids(config)).records
    summary = PreprocessSummary(records=len(records))
    logger.info("preprocess: %d records from %s into %s", len(records), config.data.path, cache_dir)
    rejected = _preprocess_graphs(records, config, summary, workers=workers, chunk_size=chunk_size,
                                  progress=progress)
    if uses_text:
        kept = [r for r in records if r.id not in rejected]
        _preprocess_texts(kept, config, summary, chunk_size=text_chunk, progress=progress)
    summary.seconds = round(time.perf_counter() - started, 2)
    manifest = {
        **summary.__dict__,
        "data": str(config.data.path),
        "text_file": config.data.text_file,
        "encoder": config.text.encoder if uses_text else None,
        "max_length": config.text.max_length,
        "graph": asdict(graph_settings(config)),
        "rejected": rejected,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(cache_dir / MANIFEST, manifest)
    return summary


def _with_bar(total: int, desc: str, enabled: bool, work: Callable[[Callable[[int], None]], Any]) -> Any:
    bar = _Progress(total, desc, enabled)
    try:
        return work(bar.update)
    finally:
        bar.close()


def _preprocess_graphs(records: list[StructureRecord], config: Config, summary: PreprocessSummary, *,
                       workers: int, chunk_size: int, progress: bool) -> dict[str, str]:
    """Validate the cached graphs, build the rest in worker processes; returns the rejections by id."""
    cache = GraphCache(default_cache_dir(config))
    graphs = _with_bar(len(records), "graphs", progress, lambda tick: build_graphs(
        records, graph_settings(config), cache, keep=False, workers=workers, chunk_size=chunk_size, progress=tick))
    summary.graphs_built, summary.graphs_cached = graphs.built, graphs.cached
    summary.graphs_rejected = len(graphs.rejections)
    logger.info("graphs: %d built, %d from cache, %d rejected",
                summary.graphs_built, summary.graphs_cached, summary.graphs_rejected)
    return {r.id: r.reason for r in graphs.rejections}


def _preprocess_texts(records: list[StructureRecord], config: Config, summary: PreprocessSummary, *,
                      chunk_size: int, progress: bool) -> None:
    """Resolve the texts (describing the missing ones) and encode every distinct text into the cache."""
    cache_dir = default_cache_dir(config)
    info = TextInfo()
    texts = resolve_texts(records, config, cache_dir, info)
    summary.texts_missing = info.num_missing
    side = TextSide(config, cache_dir)
    summary.encoder_id = side.encoder.model_id
    if side.trainable:  # the encoder trains with the model: its outputs change every step, nothing to cache
        summary.texts = len(distinct_texts(texts))
        logger.info("embeddings: none computed (text.finetune=%s runs the encoder in training)", config.text.finetune)
        return
    fill = _with_bar(len(distinct_texts(texts)), "embeddings", progress,
                     lambda tick: side.fill_cache(texts, trust_present=False, chunk_size=chunk_size, progress=tick))
    summary.texts, summary.embeddings_encoded, summary.embeddings_cached = fill.distinct, fill.encoded, fill.cached
    logger.info("embeddings: %d encoded, %d from cache", summary.embeddings_encoded, summary.embeddings_cached)
