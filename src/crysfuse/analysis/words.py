"""Text tokens as words: the tokenizer's pieces of a description grouped into the words a reader sees.

The encoder's cache holds one embedding per token (special tokens included, padding removed), so attention
over the text is attention over word pieces (``Ti``, ``##O``, ``2``, ``.``, ``13``). For reading, the pieces
are grouped into whitespace-delimited words of the original text (``TiO2``, ``2.13``), using the fast
tokenizer's character offsets; a special token (``[CLS]``, ``[SEP]``) is a word of its own. A word's attention
is the sum of its pieces' weights, so each row still sums to 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from crysfuse.analysis.explain_errors import TokenAlignmentError

__all__ = ["TokenAlignmentError", "TokenWords", "group_by_markers", "group_by_offsets", "token_words"]

CONTINUATION_PREFIX = "##"
"""WordPiece marks a piece that continues the previous one with this prefix."""
WORD_START_MARKERS = ("\u2581", "\u0120")
"""SentencePiece (``▁``) and byte-level BPE (``Ġ``) mark a piece that starts a new word."""


@dataclass
class TokenWords:
    """The tokens of one text and the words they form.

    Attributes:
        tokens: ``[L]`` the tokenizer's pieces, special tokens included (one per cached token embedding).
        words: ``[W]`` the words, in text order.
        word_of_token: ``[L]`` index into ``words`` of every token.
    """

    tokens: list[str]
    words: list[str]
    word_of_token: list[int]

    def merge(self, weights: np.ndarray) -> np.ndarray:
        """Token-level weights ``[Q, L]`` → word-level ``[Q, W]`` (sums over each word's pieces)."""
        merged = np.zeros((weights.shape[0], len(self.words)), dtype=float)
        np.add.at(merged.T, np.asarray(self.word_of_token, dtype=int), np.asarray(weights, dtype=float).T)
        return merged


def group_by_offsets(tokens: Sequence[str], offsets: Sequence[tuple[int, int] | None], text: str) -> TokenWords:
    """Group pieces into whitespace-delimited words by their character spans in ``text``.

    A piece without a span (``None`` or an empty span: special tokens) is a word of its own, named by the
    token; a piece whose span starts where the previous piece ended (no whitespace between) joins its word.
    """
    words: list[str] = []
    spans: list[list[int]] = []  # [start, end] of the current word, per word (-1 for special tokens)
    word_of_token: list[int] = []
    previous_end = None
    for token, span in zip(tokens, offsets):
        if span is None or span[1] <= span[0]:
            words.append(token)
            spans.append([-1, -1])
            previous_end = None
        elif previous_end is not None and span[0] == previous_end:
            spans[-1][1] = span[1]
            words[-1] = text[spans[-1][0]:span[1]]
            previous_end = span[1]
        else:
            words.append(text[span[0]:span[1]])
            spans.append([span[0], span[1]])
            previous_end = span[1]
        word_of_token.append(len(words) - 1)
    return TokenWords(tokens=list(tokens), words=words, word_of_token=word_of_token)


def group_by_markers(tokens: Sequence[str], special: Sequence[str] = ()) -> TokenWords:
    """Fallback without offsets (slow tokenizers): ``##`` pieces join the previous word, ``▁``/``Ġ`` pieces
    start one, special tokens are words of their own. Without any marker every piece is a word."""
    words: list[str] = []
    word_of_token: list[int] = []
    uses_start_markers = any(t.startswith(WORD_START_MARKERS) for t in tokens)
    for index, token in enumerate(tokens):
        joins = bool(words) and token not in special and tokens[index - 1] not in special and (
            token.startswith(CONTINUATION_PREFIX) if not uses_start_markers
            else not token.startswith(WORD_START_MARKERS))
        piece = token[len(CONTINUATION_PREFIX):] if token.startswith(CONTINUATION_PREFIX) else token.lstrip(
            "".join(WORD_START_MARKERS))
        if joins:
            words[-1] += piece
        else:
            words.append(piece if token not in special else token)
        word_of_token.append(len(words) - 1)
    return TokenWords(tokens=list(tokens), words=words, word_of_token=word_of_token)


def token_words(tokenizer: Any, text: str | None, *, max_length: int, num_tokens: int) -> TokenWords:
    """Tokens and words of ``text`` as the encoder saw it (truncated to ``max_length`` tokens).

    Raises:
        TokenAlignmentError: the tokenizer gives another number of tokens than the ``num_tokens`` embeddings
            the model read (the run's encoder or ``text.max_length`` changed since its cache was filled).
    """
    if not text or not str(text).strip():
        if num_tokens:
            raise TokenAlignmentError(f"an empty text has no tokens, but the model read {num_tokens}")
        return TokenWords(tokens=[], words=[], word_of_token=[])
    fast = bool(getattr(tokenizer, "is_fast", False))
    encoding = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=fast, verbose=False)
    tokens = tokenizer.convert_ids_to_tokens(encoding["input_ids"])
    if len(tokens) != num_tokens:
        raise TokenAlignmentError(
            f"the tokenizer splits the text into {len(tokens)} tokens but the model read {num_tokens} token "
            "embeddings: the run's encoder or text.max_length no longer matches its embedding cache")
    if fast:
        special = set(tokenizer.all_special_ids)
        offsets = [None if token_id in special else tuple(span)
                   for token_id, span in zip(encoding["input_ids"], encoding["offset_mapping"])]
        return group_by_offsets(tokens, offsets, str(text))
    return group_by_markers(tokens, special=list(tokenizer.all_special_tokens))
