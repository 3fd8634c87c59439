"""On-disk cache of text embeddings, one safetensors file per (model, max_length, text).

Layout: ``<root>/<model slug>/<ab>/<sha256>.safetensors`` where ``sha256`` hashes the model id, the
max length and the text, and ``ab`` are its first two hex digits (fan-out keeps folders small). Files are
written atomically (temporary file + ``os.replace``), so concurrent writers and interrupted runs never leave
a half-written file under the final name; a damaged file found anyway is removed and recomputed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from crysfuse.text.encoder import EncodedText, TextEncoder

logger = logging.getLogger(__name__)

__all__ = ["EmbeddingCache", "encode_cached"]

_FORMAT = "crysfuse-text-embedding-v1"


def _missing(text: str | None) -> bool:
    return text is None or not str(text).strip()


class EmbeddingCache:
    """Text → :class:`EncodedText` on disk, for one encoder model and one ``max_length``."""

    def __init__(self, root: Path, model_id: str, max_length: int) -> None:
        """Args:
        root: cache folder (created on first write).
        model_id: :attr:`TextEncoder.model_id` of the encoder whose outputs are stored.
        max_length: the encoder's ``max_length`` (part of the key: it changes truncation).
        """
        self.root = Path(root)
        self.model_id = model_id
        self.max_length = int(max_length)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_") or "model"
        self.folder = self.root / f"{slug}-L{self.max_length}"

    def key(self, text: str) -> str:
        """sha256 hex digest of model id, max length and text."""
        payload = f"{self.model_id}\0{self.max_length}\0{text}".encode("utf-8", errors="surrogatepass")
        return hashlib.sha256(payload).hexdigest()

    def path(self, text: str) -> Path:
        """File that holds (or would hold) the embedding of ``text``."""
        key = self.key(text)
        return self.folder / key[:2] / f"{key}.safetensors"

    def get(self, text: str | None) -> EncodedText | None:
        """The cached encoding of ``text``, or ``None`` on a miss.

        Missing texts (``None``, empty, blank) are never cached and always miss. A damaged file (unreadable
        safetensors, wrong keys, shapes or dtypes, or metadata of another model) is logged, removed and
        reported as a miss.
        """
        if _missing(text):
            return None
        path = self.path(str(text))
        if not path.is_file():
            return None
        try:
            return self._load(path)
        except Exception as exc:  # noqa: BLE001 - any damage means "recompute"
            logger.warning(
                "removing damaged text-embedding cache file %s (%s: %s)", path, type(exc).__name__, exc
            )
            path.unlink(missing_ok=True)
            return None

    def _load(self, path: Path) -> EncodedText:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != _FORMAT:
                raise ValueError(f"unknown format {meta.get('format')!r}")
            if meta.get("model_id") != self.model_id or meta.get("max_length") != str(self.max_length):
                raise ValueError("file belongs to another model or max_length")
            if set(fh.keys()) != {"tokens", "pooled"}:
                raise ValueError(f"unexpected tensors {sorted(fh.keys())}")
            tokens, pooled = fh.get_tensor("tokens"), fh.get_tensor("pooled")
        if tokens.dtype != torch.float16 or pooled.dtype != torch.float16:
            raise ValueError(f"dtypes {tokens.dtype}/{pooled.dtype}, expected float16")
        if tokens.dim() != 2 or pooled.dim() != 1 or tokens.shape[1] != pooled.shape[0]:
            raise ValueError(f"shapes {tuple(tokens.shape)}/{tuple(pooled.shape)} do not fit [L, D]/[D]")
        if tokens.shape[0] == 0 or tokens.shape[0] > self.max_length:
            raise ValueError(f"{tokens.shape[0]} tokens, expected 1..{self.max_length}")
        return EncodedText(tokens=tokens, pooled=pooled, truncated=meta.get("truncated") == "1")

    def put(self, text: str | None, encoded: EncodedText) -> None:
        """Store the encoding of ``text`` (no-op for missing texts); atomic (temp file + ``os.replace``)."""
        if _missing(text) or encoded.tokens.shape[0] == 0:
            return
        path = self.path(str(text))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        tensors = {
            "tokens": encoded.tokens.detach().to("cpu", torch.float16).contiguous(),
            "pooled": encoded.pooled.detach().to("cpu", torch.float16).contiguous(),
        }
        metadata = {
            "format": _FORMAT,
            "model_id": self.model_id,
            "max_length": str(self.max_length),
            "truncated": "1" if encoded.truncated else "0",
        }
        try:
            save_file(tensors, str(tmp), metadata=metadata)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def encode_cached(
    encoder: TextEncoder, texts: list[str | None], cache: EmbeddingCache | None
) -> list[EncodedText]:
    """Encode ``texts``, reading and filling ``cache``; each distinct text is encoded at most once.

    Missing texts never reach the model (``L == 0`` results); cache hits are read from disk; the distinct
    misses are encoded in one :meth:`TextEncoder.encode` call and stored. Equal texts share one result object.

    Args:
        encoder: the encoder (loaded only if there is at least one miss).
        texts: ``N`` texts or ``None``.
        cache: the cache, or ``None`` to only deduplicate.

    Returns:
        ``N`` :class:`EncodedText` in input order.
    """
    if cache is not None and (
        cache.model_id != encoder.model_id or cache.max_length != encoder.settings.max_length
    ):
        raise ValueError(
            f"cache is for {cache.model_id} / max_length {cache.max_length}, encoder is "
            f"{encoder.model_id} / max_length {encoder.settings.max_length}"
        )
    found: dict[str, EncodedText] = {}
    misses: dict[str, None] = {}  # insertion-ordered set
    for text in texts:
        if _missing(text):
            continue
        key = str(text)
        if key in found or key in misses:
            continue
        hit = cache.get(key) if cache is not None else None
        if hit is None:
            misses[key] = None
        else:
            found[key] = hit
    empty: EncodedText | None = None
    if len(found) + len(misses) < len(texts) and any(_missing(t) for t in texts):
        dim = encoder.dim  # config only: missing texts never load the model
        empty = EncodedText(
            tokens=torch.zeros(0, dim, dtype=torch.float16),
            pooled=torch.zeros(dim, dtype=torch.float16),
            truncated=False,
        )
    if misses:
        logger.info(
            "text embeddings: %d distinct texts, %d from cache, %d to encode",
            len(found) + len(misses),
            len(found),
            len(misses),
        )
        to_encode = list(misses)
        for text, encoded in zip(to_encode, encoder.encode(to_encode)):
            found[text] = encoded
            if cache is not None:
                cache.put(text, encoded)
    return [empty if _missing(t) else found[str(t)] for t in texts]  # type: ignore[misc]
