"""Records → graphs (cached) → descriptions (given, joined or described; cached) → frozen text
embeddings (cached) → :class:`CrystalData` items. Every record that falls out says why."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from crysfuse.config import Config
from crysfuse.data.atom_features import UnknownElementError
from crysfuse.data.cache import GraphCache, structure_key
from crysfuse.data.dataset import CrystalData, make_crystal_data
from crysfuse.data.graphs import CrystalGraph, GraphBuildError, GraphSettings, build_crystal_graph
from crysfuse.data.sources import Rejection, StructureRecord
from crysfuse.data.text_files import read_text_file

logger = logging.getLogger(__name__)


LAZY_MIN_RECORDS = int(os.environ.get("CRYSFUSE_LAZY_MIN_RECORDS", "5000"))
"""From this many records on, :func:`prepare` returns lazy items (read from the caches on access)."""


def default_cache_dir(config: Config) -> Path:
    """``data.cache_dir``, else ``$CRYSFUSE_CACHE``, else ``~/.cache/crysfuse``."""
    if config.data.cache_dir:
        return Path(config.data.cache_dir)
    return Path(os.environ.get("CRYSFUSE_CACHE", Path.home() / ".cache" / "crysfuse"))


@dataclass
class TextInfo:
    """What the text side used: encoder id and width (0 without text), counts for the log and summary."""

    encoder_id: str | None = None
    dim_text: int = 0
    num_missing: int = 0
    num_described: int = 0
    num_truncated: int = 0


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


def graph_settings(config: Config) -> GraphSettings:
    """The graph section of the config as :class:`GraphSettings`."""
    return GraphSettings(
        cutoff=config.graph.cutoff, max_neighbors=config.graph.max_neighbors, max_atoms=config.graph.max_atoms
    )


def build_graphs(
    records: list[StructureRecord], settings: GraphSettings, cache: GraphCache | None
) -> tuple[dict[str, CrystalGraph], list[Rejection]]:
    """Graphs for every record that has one; the others become rejections (stage ``graph``)."""
    graphs: dict[str, CrystalGraph] = {}
    rejections: list[Rejection] = []
    built = 0
    for record in records:
        try:
            key = structure_key(record.structure, settings)
            graph = cache.get(key) if cache else None
            if graph is None:
                graph = build_crystal_graph(record.structure, settings)
                built += 1
                if cache:
                    cache.put(key, graph)
        except (GraphBuildError, UnknownElementError) as err:
            rejections.append(Rejection(record.id, "graph", str(err)))
            continue
        graphs[record.id] = graph
    logger.info("graphs: %d ready (%d built, %d from cache), %d rejected",
                len(graphs), built, len(graphs) - built, len(rejections))
    return graphs, rejections


def resolve_texts(records: list[StructureRecord], config: Config, cache_dir: Path, info: TextInfo) -> list[str | None]:
    """Text per record: the record's own, else ``data.text_file``, else the configured describer (if any)."""
    texts: list[str | None] = [r.text for r in records]
    if config.data.text_file:
        joined = read_text_file(config.data.text_file)
        texts = [t if t is not None else joined.get(r.id) for t, r in zip(texts, records)]
    todo = [i for i, t in enumerate(texts) if t is None]
    if todo and config.text.describer:
        from crysfuse.data.describe import describe_many

        described, failures = describe_many(
            [records[i].structure for i in todo], config.text.describer, cache_dir=cache_dir / "descriptions"
        )
        for i, text in zip(todo, described):
            texts[i] = text
        info.num_described = sum(t is not None for t in described)
        for position, message in failures.items():
            logger.warning("no description for %s: %s", records[todo[position]].id, message)
    info.num_missing = sum(1 for t in texts if not t)
    if info.num_missing:
        logger.warning("%d of %d records have no text; they are encoded as empty text (all tokens masked)",
                       info.num_missing, len(texts))
    return texts


class TextSide:
    """The frozen encoder of a config with its embedding cache: ``encode(texts)`` encodes only misses."""

    def __init__(self, config: Config, cache_dir: Path) -> None:
        from crysfuse.text.cache import EmbeddingCache
        from crysfuse.text.encoder import EncoderSettings, TextEncoder

        self.encoder = TextEncoder(EncoderSettings(config.text.encoder, config.text.max_length, config.text.batch_size))
        self.cache = EmbeddingCache(cache_dir / "embeddings", self.encoder.model_id, config.text.max_length)

    def encode(self, texts: list[str | None]) -> list:  # list[EncodedText]
        from crysfuse.text.cache import encode_cached

        return encode_cached(self.encoder, texts, self.cache)


def with_text(item: CrystalData, encoded) -> CrystalData:  # noqa: ANN001 - EncodedText
    """A shallow copy of ``item`` (graph tensors shared) carrying other text embeddings."""
    other = copy.copy(item)
    other.text_tokens = encoded.tokens
    other.text_pooled = encoded.pooled.reshape(1, -1)
    return other


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
    graphs, result.rejections = build_graphs(records, graph_settings(config), GraphCache(cache_dir))
    kept = [r for r in records if r.id in graphs]
    no_tokens, no_pooled = torch.zeros(0, 1, dtype=torch.float16), torch.zeros(1, dtype=torch.float16)
    for index, record in enumerate(kept):
        result.items[record.id] = make_crystal_data(
            graphs[record.id], tokens=no_tokens, pooled=no_pooled, target=record.target, index=index
        )
    if uses_text:
        texts = resolve_texts(kept, config, cache_dir, result.text)
        result.texts = {r.id: t for r, t in zip(kept, texts)}
        result.text_side = TextSide(config, cache_dir)
        encoded = result.text_side.encode(texts)
        result.text.encoder_id = result.text_side.encoder.model_id
        result.text.dim_text = result.text_side.encoder.dim
        result.text.num_truncated = sum(e.truncated for e in encoded)
        if result.text.num_truncated:
            logger.warning("%d texts were truncated to %d tokens", result.text.num_truncated, config.text.max_length)
        for record, enc in zip(kept, encoded):
            result.items[record.id] = with_text(result.items[record.id], enc)
    return result


def prepare_lazy(records: list[StructureRecord], config: Config, *, uses_text: bool, cache_dir: Path) -> PreparedData:
    """:func:`prepare` with :class:`~crysfuse.data.store.LazyItems`: cache entries are only checked for
    presence here (graphs and embeddings that are missing are built and stored, in chunks); their contents are
    validated when an item is loaded, and a damaged entry is rebuilt then."""
    from crysfuse.data.store import LazyEntry, LazyItems

    settings = graph_settings(config)
    graph_cache = GraphCache(cache_dir)
    result = PreparedData()
    keys: dict[str, str] = {}
    built = 0
    for record in records:
        key = structure_key(record.structure, settings)
        if not graph_cache.path(key).is_file():
            try:
                graph_cache.put(key, build_crystal_graph(record.structure, settings))
                built += 1
            except (GraphBuildError, UnknownElementError) as err:
                result.rejections.append(Rejection(record.id, "graph", str(err)))
                continue
        keys[record.id] = key
    logger.info("graphs: %d ready (%d built, %d in the cache, read on access), %d rejected",
                len(keys), built, len(keys) - built, len(result.rejections))
    kept = [r for r in records if r.id in keys]
    texts: list[str | None] = [None] * len(kept)
    if uses_text:
        texts = resolve_texts(kept, config, cache_dir, result.text)
        result.texts = {r.id: t for r, t in zip(kept, texts)}
        side = result.text_side = TextSide(config, cache_dir)
        result.text.encoder_id = side.encoder.model_id
        result.text.dim_text = side.encoder.dim
        distinct = dict.fromkeys(t for t in texts if t and str(t).strip())
        misses = [t for t in distinct if not side.cache.path(t).is_file()]
        logger.info("text embeddings: %d distinct texts, %d in the cache (read on access), %d to encode",
                    len(distinct), len(distinct) - len(misses), len(misses))
        for start in range(0, len(misses), 512):
            chunk = misses[start:start + 512]
            for text, encoded in zip(chunk, side.encoder.encode(chunk)):
                side.cache.put(text, encoded)
                result.text.num_truncated += int(encoded.truncated)
    entries = {
        r.id: LazyEntry(keys[r.id], text, r.target, index) for index, (r, text) in enumerate(zip(kept, texts))
    }
    result.items = LazyItems(entries, graph_cache, text_side=result.text_side, dim_text=result.text.dim_text,
                             structures={r.id: r.structure for r in kept}, settings=settings)
    return result
