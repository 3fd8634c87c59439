"""Records → graphs (cached) → descriptions (given, joined or described; cached) → frozen text
embeddings (cached), or token ids when the encoder is trained with the model → :class:`CrystalData` items.
Every record that falls out says why.

Both ways to the items use the same two routines: :func:`~crysfuse.data.cache.build_graphs` for the graphs and
:class:`~crysfuse.data.texts.TextSide` for the embeddings. Small data is held in memory; from
:data:`LAZY_MIN_RECORDS` records on only cache references are kept (:class:`~crysfuse.data.store.LazyItems`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from crysfuse.config import Config
from crysfuse.data.cache import GraphCache, build_graphs, default_cache_dir, graph_settings
from crysfuse.data.dataset import CrystalData, make_crystal_data, with_text
from crysfuse.data.records import Rejection, StructureRecord, StructuresOf
from crysfuse.data.store import LazyEntry, LazyItems
from crysfuse.data.texts import TextInfo, TextSide, resolve_texts

logger = logging.getLogger(__name__)


LAZY_MIN_RECORDS = int(os.environ.get("CRYSFUSE_LAZY_MIN_RECORDS", "5000"))
"""From this many records on, :func:`prepare` returns lazy items (read from the caches on access)."""


@dataclass
class PreparedData:
    """Items by record id, in record order, plus rejections and text bookkeeping.

    ``items`` is a plain dict for small data and a :class:`~crysfuse.data.store.LazyItems` mapping (values read
    from the on-disk caches on access) from :data:`LAZY_MIN_RECORDS` records on; use
    :func:`~crysfuse.data.store.item_list` to take a subset without loading it.
    """

    items: Mapping[str, CrystalData] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    text: TextInfo = field(default_factory=TextInfo)
    texts: dict[str, str | None] = field(default_factory=dict)
    text_side: TextSide | None = None


def prepare(
    records: list[StructureRecord], config: Config, *, uses_text: bool, lazy: bool | None = None
) -> PreparedData:
    """Turn records into model-ready items (graphs always; texts only when the model uses them).

    Args:
        lazy: keep only cache references and load each item on access (default: from
            :data:`LAZY_MIN_RECORDS` records on). The items are the same either way.
    """
    cache_dir = default_cache_dir(config)
    if lazy if lazy is not None else len(records) >= LAZY_MIN_RECORDS:
        return prepare_lazy(records, config, uses_text=uses_text, cache_dir=cache_dir)
    result = PreparedData()
    graphs = build_graphs(records, graph_settings(config), GraphCache(cache_dir))
    logger.info("graphs: %d ready (%d built, %d from cache), %d rejected",
                len(graphs.keys), graphs.built, graphs.cached, len(graphs.rejections))
    result.rejections = graphs.rejections
    kept = [r for r in records if r.id in graphs.graphs]
    no_tokens, no_pooled = torch.zeros(0, 1, dtype=torch.float16), torch.zeros(1, dtype=torch.float16)
    for index, record in enumerate(kept):
        result.items[record.id] = make_crystal_data(
            graphs.graphs[record.id], tokens=no_tokens, pooled=no_pooled, target=record.target, index=index
        )
    if uses_text:
        texts = _text_side(result, kept, config, cache_dir)
        encoded = result.text_side.text_inputs(texts)
        result.text.num_truncated = sum(e.truncated for e in encoded)
        if result.text.num_truncated:
            logger.warning("%d texts were truncated to %d tokens", result.text.num_truncated, config.text.max_length)
        for record, enc in zip(kept, encoded):
            result.items[record.id] = with_text(result.items[record.id], enc)
    return result


def _text_side(result: PreparedData, kept: list[StructureRecord], config: Config,
               cache_dir: Path) -> list[str | None]:
    """Resolve the texts of ``kept`` and open the text side, recording both in ``result``."""
    texts = resolve_texts(kept, config, cache_dir, result.text)
    result.texts = {r.id: t for r, t in zip(kept, texts)}
    result.text_side = TextSide(config, cache_dir)
    result.text.encoder_id = result.text_side.encoder.model_id
    result.text.dim_text = result.text_side.encoder.dim
    return texts


def prepare_lazy(records: list[StructureRecord], config: Config, *, uses_text: bool, cache_dir: Path) -> PreparedData:
    """:func:`prepare` with :class:`~crysfuse.data.store.LazyItems`: cache entries are only checked for
    presence here (graphs and embeddings that are missing are built and stored, in chunks); their contents are
    validated when an item is loaded, and a damaged entry is rebuilt then."""
    settings = graph_settings(config)
    graph_cache = GraphCache(cache_dir)
    result = PreparedData()
    graphs = build_graphs(records, settings, graph_cache, keep=False, trust_present=True)
    logger.info("graphs: %d ready (%d built, %d in the cache, read on access), %d rejected",
                len(graphs.keys), graphs.built, graphs.cached, len(graphs.rejections))
    result.rejections = graphs.rejections
    kept = [r for r in records if r.id in graphs.keys]
    texts: list[str | None] = [None] * len(kept)
    if uses_text:
        texts = _text_side(result, kept, config, cache_dir)
        if result.text_side.trainable:  # token ids are made on access; no embedding is needed
            result.text.num_truncated = sum(t.truncated for t in result.text_side.text_inputs(texts))
        else:
            result.text.num_truncated = result.text_side.fill_cache(texts, trust_present=True).truncated
    entries = {
        r.id: LazyEntry(graphs.keys[r.id], text, r.target, index) for index, (r, text) in enumerate(zip(kept, texts))
    }
    result.items = LazyItems(entries, graph_cache, text_side=result.text_side, dim_text=result.text.dim_text,
                             structures=StructuresOf(kept), settings=settings)
    return result
