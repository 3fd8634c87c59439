"""Seeded text corruption, for training augmentation and robustness evaluation.

Strategies pick which units are corrupted:

* ``random_token``: tokenizer tokens (word pieces) — needs the encoder's tokenizer;
* ``random_word``: whitespace-separated words;
* ``sentence``: whole sentences;
* ``keep_keywords``: words, but element symbols, numbers, space-group symbols and crystal-system words are
  protected; the ratio applies to the other words.

Modes: ``mask`` replaces each chosen unit by the tokenizer's mask token (or unknown token); ``delete``
removes it. Ratio r ∈ [0, 1] is the fraction of eligible units corrupted (rounded). The choice is
deterministic for a given (record id, seed, strategy, mode, ratio). r = 1 with ``delete`` gives empty
text, which every fusion variant handles as "no text" (all tokens masked).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

STRATEGIES = ("random_token", "random_word", "sentence", "keep_keywords")
MODES = ("mask", "delete")
CRYSTAL_SYSTEM_WORDS = frozenset(
    ["cubic", "hexagonal", "tetragonal", "orthorhombic", "monoclinic", "triclinic", "trigonal", "rhombohedral"]
)
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$")
_SPACE_GROUP = re.compile(r"^[PIFCABR][-\d_/a-z]*\d[-\d_/a-zA-Z]*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_STRIP = "()[]{},.;:'\"`º°Å"


class CorruptionError(ValueError):
    """An unknown strategy or mode, a ratio outside [0, 1], or a token strategy without a tokenizer."""


@dataclass(frozen=True)
class Corruption:
    """One corruption setting."""

    strategy: str
    mode: str
    ratio: float

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise CorruptionError(f"unknown corruption strategy '{self.strategy}'; known: {', '.join(STRATEGIES)}")
        if self.mode not in MODES:
            raise CorruptionError(f"unknown corruption mode '{self.mode}'; known: {', '.join(MODES)}")
        if not 0.0 <= self.ratio <= 1.0:
            raise CorruptionError(f"corruption ratio must be in [0, 1], got {self.ratio}")

    @property
    def label(self) -> str:
        return f"{self.strategy}/{self.mode}/{self.ratio:g}"


@lru_cache(maxsize=1)
def _element_symbols() -> frozenset[str]:
    from pymatgen.core.periodic_table import Element

    return frozenset(e.symbol for e in Element)


def is_keyword(word: str) -> bool:
    """Element symbols, numbers, space-group symbols and crystal-system words survive ``keep_keywords``."""
    core = word.strip(_STRIP)
    if not core:
        return False
    if core in _element_symbols() or core.lower() in CRYSTAL_SYSTEM_WORDS or _NUMBER.match(core):
        return True
    if _SPACE_GROUP.match(core):
        return True
    # Formulas and element-labelled sites such as "NaCl", "Na(1)", "Ti-O".
    parts = [p for p in re.split(r"[()\d\-+]", core) if p]
    return bool(parts) and all(_is_formula(p) for p in parts)


def _is_formula(text: str) -> bool:
    symbols = re.findall(r"[A-Z][a-z]?", text)
    return bool(symbols) and "".join(symbols) == text and all(s in _element_symbols() for s in symbols)


def _rng(record_id: str, seed: int, corruption: Corruption) -> np.random.Generator:
    key = f"{seed}|{record_id}|{corruption.label}".encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))


def _corrupt_units(
    units: list[str], eligible: list[int], corruption: Corruption, rng: np.random.Generator, mask_token: str
) -> list[str]:
    count = round(corruption.ratio * len(eligible))
    chosen = set(rng.choice(eligible, size=count, replace=False).tolist()) if count else set()
    if corruption.mode == "delete":
        return [u for i, u in enumerate(units) if i not in chosen]
    return [mask_token if i in chosen else u for i, u in enumerate(units)]


def corrupt_text(
    text: str | None,
    corruption: Corruption,
    *,
    record_id: str,
    seed: int = 0,
    mask_token: str = "[MASK]",
    tokenizer: Any = None,
) -> str | None:
    """Apply ``corruption`` to ``text`` (``None`` stays ``None``).

    Args:
        text: The description.
        corruption: Strategy, mode and ratio.
        record_id: Part of the seed, so every record gets its own but reproducible choice.
        seed: Global seed.
        mask_token: Replacement in ``mask`` mode (use the encoder's ``mask_token``).
        tokenizer: A Hugging Face tokenizer; required by ``random_token``.
    """
    if text is None:
        return None
    if corruption.ratio == 0.0:
        return text
    rng = _rng(record_id, seed, corruption)
    if corruption.strategy == "random_token":
        if tokenizer is None:
            raise CorruptionError("the random_token strategy needs the encoder's tokenizer")
        tokens = tokenizer.tokenize(text)
        kept = _corrupt_units(tokens, list(range(len(tokens))), corruption, rng, mask_token)
        return tokenizer.convert_tokens_to_string(kept) if kept else ""
    if corruption.strategy == "sentence":
        units = [s for s in _SENTENCE_END.split(text.strip()) if s]
        return " ".join(_corrupt_units(units, list(range(len(units))), corruption, rng, mask_token))
    words = text.split()
    if corruption.strategy == "keep_keywords":
        eligible = [i for i, w in enumerate(words) if not is_keyword(w)]
    else:
        eligible = list(range(len(words)))
    return " ".join(_corrupt_units(words, eligible, corruption, rng, mask_token))
