"""The text side of the data: which text each record gets, and its frozen embeddings through the cache.

Texts are resolved in one order everywhere (training, prediction, ``crysfuse data check``, ``crysfuse
preprocess``): the record's own text, else the one joined by id from ``data.text_file``, else (when a describer
is configured) a generated description. :class:`TextSide` encodes them with the configured frozen encoder and
its embedding cache; :meth:`TextSide.fill_cache` is the one routine that fills that cache in chunks, for the
lazy items and ``crysfuse preprocess`` alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crysfuse.config import Config
from crysfuse.data.describe import describe_many
from crysfuse.data.records import StructureRecord
from crysfuse.data.text_files import read_text_file
from crysfuse.text.cache import EmbeddingCache, encode_cached
from crysfuse.text.encoder import EncodedText, EncoderSettings, TextEncoder
from crysfuse.text.tokens import TokenCache, TokenIds

logger = logging.getLogger(__name__)


@dataclass
class TextInfo:
    """What the text side used: encoder id and width (0 without text), counts for the log and summary."""

    encoder_id: str | None = None
    dim_text: int = 0
    num_missing: int = 0
    num_described: int = 0
    num_truncated: int = 0


def join_texts(records: Sequence[StructureRecord], config: Config) -> list[str | None]:
    """Text per record: the record's own, else the one ``data.text_file`` holds for its id (else ``None``).
    With ``data.shuffle_texts`` the file's texts are first reassigned among all of its ids
    (:func:`shuffled_texts`), so training and every later evaluation see the same shuffled assignment."""
    return _joined(records, config)[0]


def _joined(records: Sequence[StructureRecord], config: Config) -> tuple[list[str | None], list[bool]]:
    """:func:`join_texts` and, per record, whether its text came from ``data.text_file``."""
    texts: list[str | None] = [r.text for r in records]
    from_file = [False] * len(texts)
    if config.data.text_file:
        joined = read_text_file(config.data.text_file)
        if config.data.shuffle_texts:  # over the whole file: the same assignment whichever records are loaded
            ids = sorted(joined)
            joined = dict(zip(ids, shuffled_texts([joined[i] for i in ids], seed=config.data.split_seed)))
        from_file = [t is None and r.id in joined for t, r in zip(texts, records)]
        texts = [joined[r.id] if use else t for t, r, use in zip(texts, records, from_file)]
    return texts, from_file


def resolve_texts(records: list[StructureRecord], config: Config, cache_dir: Path, info: TextInfo) -> list[str | None]:
    """Text per record: :func:`join_texts`, else the configured describer (if any).

    With ``data.shuffle_texts``, the texts that did not come from the (already shuffled) ``data.text_file`` —
    the records' own and the described ones — are then reassigned among their records (:func:`shuffled_texts`;
    this part of the assignment depends on which records are loaded, the file's does not)."""
    texts, from_file = _joined(records, config)
    todo = [i for i, t in enumerate(texts) if t is None]
    if todo and config.text.describer:
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
    if config.data.shuffle_texts:
        rest = [i for i, used in enumerate(from_file) if not used]
        for i, text in zip(rest, shuffled_texts([texts[i] for i in rest], seed=config.data.split_seed)):
            texts[i] = text
        logger.info("data.shuffle_texts: every crystal gets another crystal's description (control run; %d texts "
                    "from the shuffled text file, %d shuffled among the records loaded)",
                    len(texts) - len(rest), len(rest))
    return texts


def shuffled_texts(texts: Sequence[str | None], *, seed: int) -> list[str | None]:
    """The texts reassigned by a seeded derangement of positions: a random cyclic order in which every position
    takes its successor's text, so no position keeps its own (a duplicate text, or a missing one, can still
    land on a position that held an identical one)."""
    if len(texts) < 2:
        return list(texts)
    order = np.random.default_rng(seed).permutation(len(texts))
    result: list[str | None] = [None] * len(texts)
    for position, donor in zip(order, np.roll(order, -1)):
        result[int(position)] = texts[int(donor)]
    return result


def distinct_texts(texts: Sequence[str | None]) -> list[str]:
    """The texts that have content, each once, in first-seen order."""
    return list(dict.fromkeys(t for t in texts if t and str(t).strip()))


@dataclass
class CacheFill:
    """What :meth:`TextSide.fill_cache` did: distinct texts, found in the cache, encoded, and truncated among
    the encoded ones."""

    distinct: int = 0
    cached: int = 0
    encoded: int = 0
    truncated: int = 0


class TextSide:
    """The encoder of a config with its caches: ``encode(texts)`` encodes only misses of the embedding cache;
    when the encoder is trained with the model (``text.finetune``), items carry token ids instead, tokenized
    once (:class:`~crysfuse.text.tokens.TokenCache`), and no embedding is computed."""

    def __init__(self, config: Config, cache_dir: Path) -> None:
        self.encoder = TextEncoder(EncoderSettings(config.text.encoder, config.text.max_length, config.text.batch_size))
        self.cache = EmbeddingCache(cache_dir / "embeddings", self.encoder.model_id, config.text.max_length)
        self.tokens = TokenCache(self.encoder) if config.text.finetune != "none" else None

    @property
    def trainable(self) -> bool:
        """Whether the model runs the encoder itself (items carry token ids, not embeddings)."""
        return self.tokens is not None

    def encode(self, texts: list[str | None]) -> list[EncodedText]:
        """One frozen encoding per text (read from the cache, or encoded and stored), in input order."""
        return encode_cached(self.encoder, texts, self.cache)

    def text_inputs(self, texts: list[str | None]) -> list[EncodedText | TokenIds]:
        """What the items of these texts carry (for :func:`~crysfuse.data.dataset.with_text`): their token ids
        when the encoder is trained with the model, else their frozen embeddings (through the cache)."""
        return self.tokens.ids(texts) if self.tokens is not None else self.encode(texts)

    def fill_cache(
        self,
        texts: Sequence[str | None],
        *,
        trust_present: bool,
        chunk_size: int = 512,
        progress: Callable[[int], None] | None = None,
    ) -> CacheFill:
        """Make sure the cache holds the embedding of every distinct text, encoding the misses in chunks of
        ``chunk_size`` (nothing is kept in memory beyond one chunk).

        Args:
            trust_present: Count an entry as there when its file exists (lazy items validate it when they load
                it); otherwise entries are loaded, and a damaged one is re-encoded.
            progress: Called with the number of texts done after each step (a progress bar's ``update``).
        """
        distinct = distinct_texts(texts)
        present = (lambda t: self.cache.path(t).is_file()) if trust_present else (
            lambda t: self.cache.get(t) is not None)
        misses = [t for t in distinct if not present(t)]
        fill = CacheFill(distinct=len(distinct), cached=len(distinct) - len(misses))
        logger.info("text embeddings: %d distinct texts, %d in the cache, %d to encode",
                    fill.distinct, fill.cached, len(misses))
        if progress is not None:
            progress(fill.cached)
        for start in range(0, len(misses), chunk_size):
            chunk = misses[start:start + chunk_size]
            for text, encoded in zip(chunk, self.encoder.encode(chunk)):
                self.cache.put(text, encoded)
                fill.truncated += int(encoded.truncated)
            fill.encoded += len(chunk)
            if progress is not None:
                progress(len(chunk))
        return fill
