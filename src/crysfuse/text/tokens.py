"""Token ids of texts, tokenized once: what a text encoder that is trained with the model reads every step.

A frozen encoder's outputs are cached (:mod:`crysfuse.text.cache`); a trained encoder's outputs change every
step, so what is cached instead is the tokenizer's output. :class:`TokenCache` tokenizes each distinct text
once per process and keeps its ids in memory (int32, about 1 kB for a 200-token text); the attention mask is
implied by the length and rebuilt when a batch is padded (:func:`pad_token_ids`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from crysfuse.text.encoder import TextEncoder

logger = logging.getLogger(__name__)

__all__ = ["TokenCache", "TokenIds", "pad_token_ids"]


@dataclass(frozen=True)
class TokenIds:
    """One tokenized text.

    Attributes:
        ids: ``[L]`` int32 token ids, special tokens included, cut at ``max_length``; ``L == 0`` for a missing
            or blank text.
        truncated: the text had more than ``max_length`` tokens.
    """

    ids: torch.Tensor
    truncated: bool

    @property
    def length(self) -> int:
        return int(self.ids.shape[0])


def _missing(text: str | None) -> bool:
    return text is None or not str(text).strip()


class TokenCache:
    """Text → :class:`TokenIds` for one encoder's tokenizer and ``max_length``; every distinct text is
    tokenized once (the same ids, truncation included, as the frozen encoder's forward pass sees)."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder
        self._known: dict[str, TokenIds] = {}
        self._empty = TokenIds(torch.zeros(0, dtype=torch.int32), False)

    def __len__(self) -> int:
        return len(self._known)

    def ids(self, texts: Sequence[str | None]) -> list[TokenIds]:
        """The token ids of ``texts`` in input order; new distinct texts are tokenized in one call."""
        new = list(dict.fromkeys(str(t) for t in texts if not _missing(t) and str(t) not in self._known))
        if new:
            self._tokenize(new)
        return [self._empty if _missing(t) else self._known[str(t)] for t in texts]

    def _tokenize(self, texts: list[str]) -> None:
        tokenizer, max_length = self.encoder.tokenizer, self.encoder.settings.max_length
        limit = self.encoder.max_positions
        if limit is not None and max_length > limit:
            raise ValueError(f"max_length {max_length} exceeds the model's {limit} positions")
        full = tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        cut = tokenizer(texts, truncation=True, max_length=max_length, verbose=False)["input_ids"]
        for text, ids, whole in zip(texts, cut, full):
            self._known[text] = TokenIds(torch.tensor(ids, dtype=torch.int32), len(whole) > max_length)
        logger.debug("tokenized %d texts (%d known)", len(texts), len(self._known))


def pad_token_ids(ids: torch.Tensor, lengths: torch.Tensor, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad concatenated token ids into a batch.

    Args:
        ids: ``[sum L_i]`` the ids of B texts one after the other.
        lengths: ``[B]`` int, ``L_i`` per text (0 allowed).
        pad_id: the id written into padding (masked, so any valid id works).

    Returns:
        ``input_ids`` ``[B, T]`` int64 and ``attention_mask`` ``[B, T]`` int64 (1 for real tokens),
        ``T = max L_i``.
    """
    batch = int(lengths.numel())
    width = int(lengths.max()) if batch else 0
    positions = torch.arange(width, device=ids.device).unsqueeze(0)  # [1, T]
    mask = positions < lengths.to(ids.device).unsqueeze(1)  # [B, T]
    padded = torch.full((batch, width), pad_id, dtype=torch.long, device=ids.device)
    padded[mask] = ids.long()
    return padded, mask.long()
