"""Records → graphs (cached) → descriptions (given, joined or described; cached) → frozen text
embeddings (cached) → :class:`CrystalData` items. Every record that falls out says why."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from crysfuse.config import Config
from crysfuse.data.atom_features import UnknownElementError, check_elements
from crysfuse.data.cache import GraphCache, structure_key
from crysfuse.data.dataset import CrystalData, make_crystal_data
from crysfuse.data.graphs import CrystalGraph, GraphBuildError, GraphSettings, build_crystal_graph
from crysfuse.data.sources import Rejection, StructureRecord, read_text_file

logger = logging.getLogger(__name__)


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
    """Items by record id, in record order, plus rejections and text bookkeeping."""

    items: dict[str, CrystalData] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    text: TextInfo = field(default_factory=TextInfo)


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
            check_elements(record.structure.atomic_numbers)
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


def prepare(records: list[StructureRecord], config: Config, *, uses_text: bool) -> PreparedData:
    """Turn records into model-ready items (graphs always; texts only when the fusion variant uses them)."""
    cache_dir = default_cache_dir(config)
    result = PreparedData()
    graphs, result.rejections = build_graphs(records, graph_settings(config), GraphCache(cache_dir))
    kept = [r for r in records if r.id in graphs]
    if uses_text:
        from crysfuse.text.cache import EmbeddingCache, encode_cached
        from crysfuse.text.encoder import EncoderSettings, TextEncoder

        texts = resolve_texts(kept, config, cache_dir, result.text)
        encoder = TextEncoder(EncoderSettings(config.text.encoder, config.text.max_length, config.text.batch_size))
        cache = EmbeddingCache(cache_dir / "embeddings", encoder.model_id, config.text.max_length)
        encoded = encode_cached(encoder, texts, cache)
        result.text.encoder_id, result.text.dim_text = encoder.model_id, encoder.dim
        result.text.num_truncated = sum(e.truncated for e in encoded)
        if result.text.num_truncated:
            logger.warning("%d texts were truncated to %d tokens", result.text.num_truncated, config.text.max_length)
        for index, (record, enc) in enumerate(zip(kept, encoded)):
            result.items[record.id] = make_crystal_data(
                graphs[record.id], tokens=enc.tokens, pooled=enc.pooled, target=record.target, index=index
            )
    else:
        no_tokens, no_pooled = torch.zeros(0, 1, dtype=torch.float16), torch.zeros(1, dtype=torch.float16)
        for index, record in enumerate(kept):
            result.items[record.id] = make_crystal_data(
                graphs[record.id], tokens=no_tokens, pooled=no_pooled, target=record.target, index=index
            )
    return result
